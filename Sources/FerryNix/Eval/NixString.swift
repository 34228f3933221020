/// A Nix string or attribute name: bytes, as Nix keeps them. They need not be UTF-8, and they
/// compare, hash and sort bytewise (Swift's `String` would replace invalid bytes and treat
/// canonically equivalent names — `é` and `e` + U+0301 — as one).
public struct NixString: Hashable, Comparable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init<S: Sequence>(bytes: S) where S.Element == UInt8 { self.bytes = Array(bytes) }
    public init(_ text: String) { bytes = Array(text.utf8) }
    public init(stringLiteral text: String) { bytes = Array(text.utf8) }

    public static func < (a: NixString, b: NixString) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
    public static func + (a: NixString, b: NixString) -> NixString { NixString(a.bytes + b.bytes) }

    public var isEmpty: Bool { bytes.isEmpty }
    public var count: Int { bytes.count }

    /// As text, for messages and for callers that need a `String` (bytes that are not UTF-8
    /// become U+FFFD there).
    public var description: String { String(decoding: bytes, as: UTF8.self) }

    /// The exact text, when the bytes are UTF-8.
    public var text: String? { String(validating: bytes, as: UTF8.self) }
}
