import Foundation

/// Sends kernel notifications (entry and inode invalidations) from a thread of its own, never
/// from a FUSE worker: an entry invalidation takes the directory's lock in the kernel, which a
/// create, rename or lookup in that directory holds while it waits for the daemon's answer. A
/// worker waiting there holds a thread that answer may need: with more writers in one folder
/// than worker threads, every worker waited on a lock whose holder waited on a worker (the
/// mount froze at 18 writers). A close that must not return before its invalidations are sent
/// (flush) hands its reply to the notifier as the job's completion, so its worker goes back to
/// the pool at once.
final class Notifier: @unchecked Sendable {
    // @unchecked: every field is guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var started = false
    private var stopped = false

    /// Runs `job` on the notifier's thread after every job enqueued before it (here, at once,
    /// once the mount is going away: the session has ended and nothing waits on the kernel).
    func enqueue(_ job: @escaping @Sendable () -> Void) {
        let queued = condition.withLock { () -> Bool in
            guard !stopped else { return false }
            jobs.append(job)
            if !started {
                started = true
                let thread = Thread { [self] in run() }
                thread.name = "tsr-notifier"
                thread.start()
            }
            condition.signal()
            return true
        }
        if !queued { job() }
    }

    /// Lets the thread end once the jobs queued so far are done.
    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let batch = jobs
            jobs.removeAll()
            condition.unlock()
            for job in batch { job() }
        }
    }
}
