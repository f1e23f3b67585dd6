import Decos
import DecosCLI
@preconcurrency import Glibc

if !Executors.runTasksOnEventLoops() {
    fputs("decos: warning: tasks run on Swift's own pool (another scheduler hook is installed)\n", stderr)
}
await DecosCLI.main()
