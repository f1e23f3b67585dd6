// swift-tools-version:6.1
import PackageDescription

// Coverage-guided fuzzing of every decoder of outside input (docs/reliability.md). A package of
// its own, so the node's build is untouched: `scripts/fuzz.sh` builds it with
// `-sanitize=fuzzer,address` and `-enable-testing` (the decoders are internal to their modules).
let package = Package(
    name: "decos-fuzz",
    dependencies: [.package(name: "decos", path: "..")],
    targets: [
        .executableTarget(
            name: "decos-fuzz",
            dependencies: [.product(name: "DecosDecoders", package: "decos")],
            // libFuzzer brings `main`; this module only defines the entry point it calls.
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ]
)
