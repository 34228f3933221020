import CNativeStack
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Deep Nix — recursion tens of thousands of calls deep, long operator chains, deep nesting,
/// cycles — must end in Nix's "stack overflow" error, never a crash. Evaluation runs on a
/// thread with a large stack, and every recursive step checks how much of it is left.
public enum NativeStack {
    /// Address space for the evaluation thread's stack; pages are touched only as used.
    public static let size = 1 << 30
    /// What must stay free below the check: a recursive step's own frames fit in it.
    static let reserve: UInt = 1 << 20

    private static let limitKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()
    private static let bigStackKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Runs `body` on a thread with a `size` stack (inline when already on one) and waits.
    public static func run<T>(_ body: @escaping () throws -> T) throws -> T {
        if pthread_getspecific(bigStackKey) != nil { return try body() }
        let box = ResultBox<T>()
        box.body = body
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            pthread_setspecific(bigStackKey, UnsafeRawPointer(bitPattern: 1))
            box.result = Result { try box.body!() }
            done.signal()
        }
        thread.stackSize = size
        thread.start()
        done.wait()
        return try box.result!.get()
    }

    /// Whether less than `reserve` of this thread's stack is left.
    @inline(__always)
    static var exhausted: Bool {
        var marker: UInt8 = 0
        let here = withUnsafeMutablePointer(to: &marker) { UInt(bitPattern: $0) }
        return here < limit()
    }

    /// Throws Nix's error when the stack is nearly used up.
    @inline(__always)
    static func check(_ location: @autoclosure () -> SourceLocation?) throws {
        if exhausted { throw overflow(location()) }
    }

    static func overflow(_ location: SourceLocation?) -> NixEvalError {
        NixEvalError("stack overflow (possible infinite recursion)", at: location)
    }

    /// The lowest address a check accepts on this thread (computed once per thread).
    private static func limit() -> UInt {
        if let cached = pthread_getspecific(limitKey) { return UInt(bitPattern: cached) }
        var low: UInt = 0
        var size = 0
        guard ferry_stack_bounds(&low, &size) == 0 else { return 0 }
        let limit = low + reserve
        pthread_setspecific(limitKey, UnsafeRawPointer(bitPattern: limit))
        return limit
    }
}

/// Carries a result from the evaluation thread back; written before the semaphore is
/// signalled and read after it is waited on.
/// Carries the body to the big-stack thread and its result back. Unchecked: the caller writes
/// `body` before starting the thread and reads `result` only after the semaphore, so the two
/// threads never touch it at once.
private final class ResultBox<T>: @unchecked Sendable {
    var body: (() throws -> T)?
    var result: Result<T, Error>?
}
