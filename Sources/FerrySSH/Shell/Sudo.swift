/// A sudo password, held in memory only: it is never printed, logged or put in argv or the
/// environment; each `sudo -S` gets it on its own stdin, ahead of the command's data.
public struct SudoPassword: Sendable, CustomStringConvertible {
    let line: [UInt8]

    /// Throws when the password cannot be one line on sudo's stdin.
    public init(_ bytes: [UInt8]) throws {
        guard !bytes.contains(0x0A), !bytes.contains(0x0D), !bytes.contains(0) else { throw SudoError.unusablePassword }
        line = bytes + [0x0A]
    }

    public var description: String { "(hidden)" }
}

/// How commands gain root on a target whose login user is not root: every command runs as
/// `sudo -n CMD`, or with a password `sudo -k -S -p '' CMD` fed the password first.
public struct Sudo: Sendable {
    public let password: SudoPassword?

    public init(password: SudoPassword?) { self.password = password }

    /// The command line the login shell runs. `-k`: sudo always reads the password, so a cached
    /// timestamp can never let the password line fall through to the command's own stdin.
    /// `env`: the login's PATH (and Nix's variables) carry over, as on NixOS, even where sudo's
    /// secure_path would replace it (NixOS keeps programs in /run/current-system/sw/bin).
    func commandLine(_ command: RemoteCommand) -> [UInt8] {
        let sudo = password == nil ? "sudo -n -- " : "sudo -k -S -p '' -- "
        return Array((sudo + #"env "PATH=$PATH" ${NIX_PATH:+"NIX_PATH=$NIX_PATH"} ${LOCALE_ARCHIVE:+"LOCALE_ARCHIVE=$LOCALE_ARCHIVE"} "#).utf8) + command.bytes
    }

    func input(_ stdin: ExecInput?) -> ExecInput? {
        guard let password else { return stdin }
        return PrefixedInput(password.line, then: stdin)
    }

    /// Finds out once, before any real command, how sudo behaves on the target for this login:
    /// passwordless, with `password`, or not at all. Costs one command (two with a password).
    public static func probe(_ shell: any RemoteShell, password: SudoPassword?) throws -> Sudo {
        // -k: only a NOPASSWD rule passes (a cached timestamp could expire mid-deploy). Else
        // `-n -v` tells a user who may not use sudo at all from one who needs a password.
        // sudo's words are read below: in the C locale, whatever the host's language.
        let plain = try shell.run(.script("export LC_ALL=C LANGUAGE=C; sudo -k -n true 2>/dev/null && exit 0; sudo -n -v; exit 1"))
        if plain.status == .exited(0) { return Sudo(password: nil) }
        let said = String(decoding: plain.stderr, as: UTF8.self)
        guard said.contains("password is required") else { throw refusal(said, shell, plain.status) }
        guard let password else { throw SudoError.passwordRequired(target: shell.name) }
        // Only the password and then end of input: after a wrong one sudo reads more lines.
        let checked = try shell.run(RemoteCommand(["env", "LC_ALL=C", "LANGUAGE=C", "sudo", "-k", "-S", "-p", "", "true"]), stdin: password.line)
        guard checked.status == .exited(0) else {
            let said = String(decoding: checked.stderr, as: UTF8.self)
            if said.contains("incorrect password") || said.contains("try again") { throw SudoError.passwordRejected(target: shell.name) }
            throw refusal(said, shell, checked.status)
        }
        return Sudo(password: password)
    }

    private static func refusal(_ said: String, _ shell: any RemoteShell, _ status: ExitStatus) -> SudoError {
        let line = said.split(whereSeparator: \.isNewline).first { !$0.hasPrefix("[sudo]") }.map(String.init)
        return .notAllowed(target: shell.name, reason: line ?? "\(status)")
    }
}

public enum SudoError: Error, Equatable, CustomStringConvertible {
    case passwordRequired(target: String)
    case passwordRejected(target: String)
    case notAllowed(target: String, reason: String)
    case unusablePassword

    public var description: String {
        switch self {
        case .passwordRequired(let target):
            return "sudo on \(target) needs a password: give it with --ask-sudo-password (prompts once) or --sudo-password-fd N (reads it from descriptor N)"
        case .passwordRejected(let target):
            return "sudo on \(target) rejected the password (nothing was sent; the host is not asked again)"
        case .notAllowed(let target, let reason):
            return "the login user on \(target) cannot use sudo (\(reason)); use user = \"root\" or give the user sudo rights"
        case .unusablePassword:
            return "the sudo password contains a line break or a NUL byte, which sudo -S cannot read"
        }
    }
}
