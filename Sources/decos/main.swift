import Decos
import DecosCLI
@preconcurrency import Glibc

Executors.fitLoopsToCPUs()
if let why = Executors.runTasksOnEventLoops() {
    fputs("decos: warning: tasks run on Swift's own pool: \(why)\n", stderr)
}
await DecosCLI.main()
