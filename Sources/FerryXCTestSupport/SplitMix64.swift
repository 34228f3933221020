@_exported import FerryTestSupport

/// The seeded generator tests use (the fixtures' own).
public typealias SplitMix64 = FixtureRandom
