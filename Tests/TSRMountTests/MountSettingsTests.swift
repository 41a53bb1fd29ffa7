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
