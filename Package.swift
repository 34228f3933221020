// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "ferry",
    // Linux only: the code calls Glibc directly, and the targets are NixOS.
    products: [
        .executable(name: "ferry", targets: ["ferry"]),
        .executable(name: "ferry-fuzz", targets: ["FerryFuzz"]),
        .library(name: "FerrySSH", targets: ["FerrySSH"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // libssh2 from the system (Debian: libssh2-1-dev).
        .systemLibrary(
            name: "CLibSSH2",
            pkgConfig: "libssh2",
            providers: [.apt(["libssh2-1-dev"])]
        ),
        .target(name: "FerrySSH", dependencies: ["CLibSSH2", .product(name: "Crypto", package: "swift-crypto")]),
        // The target's side: tree records, the layout of ROOT/.ferry, every remote script.
        .target(name: "FerryTarget", dependencies: ["FerrySSH", .product(name: "Crypto", package: "swift-crypto")]),
        // rsync-equivalent tree sync over FerrySSH: scan, plan, transfer.
        .target(name: "FerrySync", dependencies: ["FerryTarget", "FerrySSH", .product(name: "Crypto", package: "swift-crypto")]),
        // Nix reader, evaluator, writer and renderer; needs no Nix installed.
        .target(name: "FerryNix", dependencies: ["CNativeStack"]),
        // The calling thread's stack bounds (pthread_getattr_np, a GNU extension Swift cannot see).
        .target(name: "CNativeStack"),
        // A TOML 1.0 reader that refuses bad input instead of crashing.
        .target(name: "FerryTOML"),
        // Inventory (fleet.toml), and later the deploy pipeline, fleet runs and diff.
        .target(
            name: "FerryDeploy",
            dependencies: ["FerryNix", "FerrySync", "FerryTarget", "FerrySSH", "FerryTOML", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .executableTarget(
            name: "ferry",
            dependencies: [
                "FerrySSH", "FerryTarget", "FerrySync", "FerryNix", "FerryDeploy",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // libFuzzer targets for every parser (scripts/fuzz); a replayer in ordinary builds.
        .executableTarget(name: "FerryFuzz", dependencies: ["FerryDeploy", "FerryNix", "FerrySSH", "FerryTarget", "FerrySync", "FerryTOML"]),
        // Real-sshd test hosts: used by the tests, the demo and the benchmarks.
        .target(name: "FerryTestSupport", dependencies: ["FerrySSH"]),
        .executableTarget(
            name: "ferry-sandbox",
            dependencies: [
                "FerryTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // XCTest helpers shared by every test target.
        .target(name: "FerryXCTestSupport", dependencies: ["FerryTestSupport"]),
        .testTarget(
            name: "FerrySSHTests",
            dependencies: [
                "FerryXCTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(name: "FerrySyncTests", dependencies: ["FerrySync", "FerryTarget", "FerryXCTestSupport"]),
        .testTarget(name: "FerryNixTests", dependencies: ["FerryNix", "FerryXCTestSupport"]),
        .testTarget(name: "FerryDeployTests", dependencies: ["FerryDeploy", "FerryTarget", "FerrySync", "FerryXCTestSupport"]),
        .testTarget(name: "FerryTOMLTests", dependencies: ["FerryTOML", "FerryXCTestSupport"]),
        .testTarget(name: "ferryTests", dependencies: ["FerryXCTestSupport", "ferry", "ferry-sandbox", "FerryFuzz"]),
    ],
    // Every target, tools and tests too, in Swift 6 language mode (full data-race checking).
    swiftLanguageModes: [.v6]
)
