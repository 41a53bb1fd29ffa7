/// # TSRStore
///
/// The content-addressed blob store and the file-level facts tensors builds on.
///
/// - A **blob** is one model file's bytes, named by its SHA-256 (`Digest`) and stored once at
///   `blobs/sha256/<2 hex>/<64 hex>` under the home (`StoreLayout`). Blob files are read-only.
/// - Bytes only reach a blob path through a **write transaction** (`BlobWriter`, `BlobStore.adopt`):
///   they are streamed into `tmp/` while being hashed, fsynced, checked against the expected digest
///   and size, and only then renamed into place. A blob path therefore never holds partial or wrong
///   bytes; a crash leaves at most a temp file, removed by `BlobStore.open` on the next start.
/// - `Safetensors` reads and validates a `.safetensors` header without trusting it, and
///   `BaseModel` infers which base model a file was made for from its metadata.
/// - `ModelPath` holds ComfyUI's folder keys and the rules for alias names.
///
/// This module knows nothing about SQL, HTTP or FUSE.
enum TSRStoreModule {}
