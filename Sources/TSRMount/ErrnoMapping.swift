import FUSE
import TSRLibrary
import TSRRegistry
import TSRStore

/// The one place domain errors become errno values for the kernel. The cause goes to the log.
enum ErrnoMapping {
    static func errno(for error: any Error) -> Errno {
        switch error {
        case let error as Errno:
            return error
        case let error as StoreError:
            switch error {
            case let .io(_, _, code): return Errno(rawValue: code.rawValue)
            case .digestMismatch, .sizeMismatch, .changedDuringRead, .cryptoUnavailable, .transactionClosed: return .io
            case .notRegularFile: return .isDirectory
            case .crossDevice: return .crossDevice
            case .blobMissing, .busy: return .io
            }
        case let error as RegistryError:
            switch error {
            case .aliasExists, .workflowExists: return .exists
            case .aliasMissing, .workflowMissing: return .noEntry
            case .blobUnknown, .database: return .io
            case .full: return .noSpace
            case .busy: return .busy
            }
        case let error as NameError:
            switch error {
            case .tooLong: return .nameTooLong
            default: return .invalid
            }
        case let error as LibraryError:
            switch error {
            case let .store(inner): return errno(for: inner)
            case let .registry(inner): return errno(for: inner)
            case let .name(inner): return errno(for: inner)
            default: return .io
            }
        default:
            return .io
        }
    }
}
