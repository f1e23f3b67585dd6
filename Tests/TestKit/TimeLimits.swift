import Testing

extension Trait where Self == TimeLimitTrait {
    /// Every suite's bound on each of its tests: a test that hangs fails here, naming itself,
    /// instead of holding CI until its 90 minutes are up. Ten minutes is far past the slowest
    /// test's time with 270 tests at once on two cores (about two minutes).
    public static var bounded: Self { .timeLimit(.minutes(10)) }
    /// The same for tests that boot QEMU VMs under software emulation (the RDMA test moves
    /// 1.2 GiB between three of them in 3–4 minutes).
    public static var boundedForVMs: Self { .timeLimit(.minutes(30)) }
}
