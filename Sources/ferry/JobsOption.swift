import ArgumentParser

/// How many hosts a command works on at a time (deploy, diff, exec).
struct JobsOption: ParsableArguments {
    // Unconditional: "--jobs -1" is a value to refuse, not a missing one.
    @Option(name: .customLong("jobs"), parsing: .unconditional, help: ArgumentHelp("Hosts at a time.", valueName: "N"))
    var value = 8

    func validate() throws {
        guard value >= 1 else { throw ValidationError("--jobs must be at least 1") }
    }
}
