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
            case .digestMismatch, .sizeMismatch, .changedDuringRead, .cryptoUnavailable, .transactionClosed: return .ioError
            case .notRegularFile: return .isDirectory
            case .crossDevice: return .improperLink
            case .blobMissing, .busy: return .ioError
            }
        case let error as RegistryError:
            switch error {
            case .aliasExists, .workflowExists: return .fileExists
            case .aliasMissing, .workflowMissing: return .noSuchFileOrDirectory
            case .blobUnknown, .database: return .ioError
            case .full: return .noSpace
            case .busy: return .resourceBusy
            }
        case let error as NameError:
            switch error {
            case .tooLong: return .fileNameTooLong
            default: return .invalidArgument
            }
        case let error as LibraryError:
            switch error {
            case let .store(inner): return errno(for: inner)
            case let .registry(inner): return errno(for: inner)
            case let .name(inner): return errno(for: inner)
            default: return .ioError
            }
        default:
            return .ioError
        }
    }
}
