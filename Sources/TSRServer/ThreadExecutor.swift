import Foundation
import Synchronization

/// A task executor backed by threads of its own. The API's handlers run their synchronous work
/// here (`onAPIThreads`) so that nothing blocking Swift's small shared pool elsewhere in the
/// process (two threads on a two-core machine) can stall it; the server itself does not run under
/// it (see `onAPIThreads` for why).
public final class ThreadExecutor: TaskExecutor, Sendable {
    private struct Queue {
        var jobs: [UnownedJob] = []
        var head = 0
    }

    private let queue = Mutex(Queue())
    private let available = DispatchSemaphore(value: 0)

    public init(threads: Int, name: String) {
        for index in 0..<max(1, threads) {
            let thread = Thread { [self] in work() }
            thread.name = "\(name)-\(index)"
            thread.start()
        }
    }

    /// The executor the API uses: four threads for the life of the process.
    public static let api = ThreadExecutor(threads: 4, name: "tsr-api")

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        queue.withLock { $0.jobs.append(unowned) }
        available.signal()
    }

    private func work() {
        while true {
            available.wait()
            let job = queue.withLock { queue -> UnownedJob? in
                guard queue.head < queue.jobs.count else { return nil }
                let job = queue.jobs[queue.head]
                queue.head += 1
                if queue.head > 1024 && queue.head * 2 > queue.jobs.count {
                    queue.jobs.removeFirst(queue.head)
                    queue.head = 0
                }
                return job
            }
            job?.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
