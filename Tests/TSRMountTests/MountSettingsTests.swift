import Testing
@testable import TSRMount

/// `TSR_MOUNT_TUNING`, the knobs bench/tuning.py turns.
struct MountSettingsTests {
    @Test func tuningSetsEachKnobAndNamesWhatIsWrong() {
        var settings = MountSettings()
        #expect(settings.tune("entry_timeout=0,attr_timeout=2.5,negative_timeout=1,readdirplus=off,max_background=12,threads=4") == nil)
        #expect(settings.entryTimeout == 0 && settings.attributeTimeout == 2.5 && settings.negativeTimeout == 1)
        #expect(!settings.readdirPlus && settings.maxBackground == 12 && settings.threads == 4)

        var untouched = MountSettings()
        #expect(untouched.tune("threads=1")?.contains("threads is 2 to 256") == true)
        #expect(untouched.tune("readdirplus=maybe")?.contains("on or off") == true)
        #expect(untouched.tune("entry_timeout=-1")?.contains("needs seconds") == true)
        #expect(untouched.tune("colour=blue")?.contains("unknown key 'colour'") == true)
        #expect(untouched.tune("threads")?.contains("not key=value") == true)
        #expect(untouched.threads == 16 && untouched.readdirPlus && untouched.entryTimeout == 3600)
    }
}

/// Handle numbers: a passthrough open carries its backing id in the upper half of the kernel's
/// file handle, so numbers must stay below 2^32 and never be reused while in use.
struct HandleNumberTests {
    @Test func numbersWrapBelow2To32AndSkipThoseInUse() {
        var state = MountCore.HandleTable()
        let empty = MountCore.Listing(path: "", nodes: [], entries: [], epoch: 0)
        state.nextHandle = 0xFFFF_FFFE
        let a = state.store(.directory(empty))
        let b = state.store(.directory(empty))
        #expect(a == 0xFFFF_FFFE && b == 0xFFFF_FFFF)
        state.handles[1] = .directory(empty)
        let c = state.store(.directory(empty))
        #expect(c == 2, "1 is in use")
        #expect(Set([a, b, c, 1]).count == 4 && state.handles.count == 4)
    }
}
