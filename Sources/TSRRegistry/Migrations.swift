import GRDB

/// The registry's schema history. Migrations are named, applied in order, and never edited once
/// they are on main: a change is a new migration. They use SQL only, never app types, so they
/// keep meaning the same thing as the code moves on.
enum Migrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-store-registry-civitai-cache") { db in
            try db.execute(sql: v1)
        }
        migrator.registerMigration("v2-mount-change-tracking") { db in
            try db.execute(sql: v2)
        }
        migrator.registerMigration("v3-blob-prefixes") { db in
            try db.execute(sql: v3)
        }
        migrator.registerMigration("v4-partial-downloads") { db in
            try db.execute(sql: v4)
        }
        migrator.registerMigration("v5-workflows") { db in
            try db.execute(sql: v5)
        }
        migrator.registerMigration("v6-civitai-lookups-and-search") { db in
            try db.execute(sql: v6)
        }
        migrator.registerMigration("v7-mount-change-log") { db in
            try db.execute(sql: v7)
        }
        migrator.registerMigration("v8-directory-newest") { db in
            try db.execute(sql: v8)
        }
        migrator.registerMigration("v9-fetch-failures") { db in
            try db.execute(sql: v9)
        }
        migrator.registerMigration("v10-workflow-auth-provider") { db in
            try db.execute(sql: v10)
        }
        migrator.registerMigration("v11-bounded-cache") { db in
            try db.execute(sql: v11)
        }
        return migrator
    }

    static let v1 = """
        -- One row per content-addressed blob. size is exact; state says whether the bytes are here.
        CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY NOT NULL CHECK (length(sha256) = 64 AND sha256 = lower(sha256)),
            size INTEGER NOT NULL CHECK (size >= 0),
            state TEXT NOT NULL CHECK (state IN ('present', 'remote', 'quarantined')),
            verified_at TEXT,
            created_at TEXT NOT NULL,
            header_size INTEGER,
            tensor_count INTEGER,
            base_model TEXT,
            metadata_json TEXT
        );
        CREATE INDEX blobs_state ON blobs(state);

        -- Every name a blob goes by: a ComfyUI folder key plus a path relative to that folder.
        -- AUTOINCREMENT: ids are never reused, so they can serve as stable inode numbers.
        CREATE TABLE aliases (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            folder TEXT NOT NULL,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL REFERENCES blobs(sha256),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (folder, path)
        );
        CREATE INDEX aliases_sha256 ON aliases(sha256);

        -- Files on disk that tensors has hashed (tsr db scan, tsr import): the hash cache.
        -- A file whose device, inode, size and mtime_ns are unchanged is not hashed again.
        CREATE TABLE local_files (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            file_path TEXT NOT NULL UNIQUE,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            device INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            header_size INTEGER,
            tensor_count INTEGER,
            civitai_model_id INTEGER,
            civitai_version_id INTEGER,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX local_files_sha256 ON local_files(sha256);

        CREATE TABLE safetensor_metadata (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            local_file_id INTEGER NOT NULL REFERENCES local_files(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT,
            UNIQUE (local_file_id, key)
        );

        -- Where a blob's bytes can be fetched from (filled by the fetch engine).
        CREATE TABLE sources (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sha256 TEXT NOT NULL REFERENCES blobs(sha256) ON DELETE CASCADE,
            url TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT 'url',
            created_at TEXT NOT NULL,
            UNIQUE (sha256, url)
        );

        -- CivitAI cache (filled by tsr db link / cache).
        CREATE TABLE creators (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            username TEXT NOT NULL UNIQUE,
            image_url TEXT
        );
        CREATE TABLE models (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            civitai_id INTEGER NOT NULL UNIQUE,
            name TEXT NOT NULL,
            description TEXT,
            type TEXT NOT NULL,
            nsfw INTEGER,
            nsfw_level INTEGER,
            poi INTEGER,
            allow_commercial_use TEXT,
            creator_id INTEGER REFERENCES creators(id),
            download_count INTEGER,
            thumbs_up_count INTEGER,
            cached_at TEXT
        );
        CREATE TABLE model_versions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            civitai_id INTEGER NOT NULL UNIQUE,
            model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            description TEXT,
            base_model TEXT,
            base_model_type TEXT,
            download_url TEXT,
            air TEXT,
            version_index INTEGER,
            published_at TEXT,
            download_count INTEGER,
            thumbs_up_count INTEGER
        );
        CREATE INDEX model_versions_model ON model_versions(model_id);
        CREATE TABLE trained_words (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            version_id INTEGER NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
            word TEXT NOT NULL,
            position INTEGER NOT NULL,
            UNIQUE (version_id, position)
        );
        CREATE TABLE version_files (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            civitai_id INTEGER UNIQUE,
            version_id INTEGER NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
            name TEXT,
            size_kb REAL,
            type TEXT,
            format TEXT,
            fp TEXT,
            size TEXT,
            is_primary INTEGER,
            download_url TEXT,
            pickle_scan_result TEXT,
            virus_scan_result TEXT
        );
        CREATE TABLE file_hashes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            file_id INTEGER NOT NULL REFERENCES version_files(id) ON DELETE CASCADE,
            hash_type TEXT NOT NULL,
            hash_value TEXT NOT NULL,
            UNIQUE (file_id, hash_type)
        );
        CREATE INDEX file_hashes_value ON file_hashes(hash_type, hash_value);
        CREATE TABLE tags (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE
        );
        CREATE TABLE model_tags (
            model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            tag_id INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
            PRIMARY KEY (model_id, tag_id)
        );
        CREATE TABLE version_images (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            version_id INTEGER NOT NULL REFERENCES model_versions(id) ON DELETE CASCADE,
            civitai_id INTEGER,
            url TEXT,
            width INTEGER,
            height INTEGER,
            nsfw TEXT,
            nsfw_level INTEGER,
            hash TEXT,
            type TEXT,
            position INTEGER
        );
        CREATE TABLE image_generation_params (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id INTEGER NOT NULL REFERENCES version_images(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            value TEXT,
            UNIQUE (image_id, key)
        );
        CREATE TABLE image_resources (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id INTEGER NOT NULL REFERENCES version_images(id) ON DELETE CASCADE,
            name TEXT,
            type TEXT,
            hash TEXT,
            weight REAL,
            model_version_id INTEGER
        );

        CREATE VIEW v_models_with_latest AS
            SELECT m.id, m.civitai_id, m.name, m.type, m.nsfw, c.username AS creator,
                   mv.name AS latest_version, mv.base_model, m.download_count, m.thumbs_up_count
            FROM models m
            LEFT JOIN creators c ON c.id = m.creator_id
            LEFT JOIN model_versions mv ON mv.model_id = m.id AND mv.version_index = 0;

        CREATE VIEW v_local_files_full AS
            SELECT lf.file_path, lf.sha256, m.name AS model_name, m.type AS model_type,
                   mv.name AS version_name, mv.base_model, c.username AS creator
            FROM local_files lf
            LEFT JOIN model_versions mv ON mv.civitai_id = lf.civitai_version_id
            LEFT JOIN models m ON m.id = mv.model_id
            LEFT JOIN creators c ON c.id = m.creator_id;
        """

    static let v2 = """
        -- Names that went away (removed, or moved elsewhere): a directory's mtime must move when an
        -- entry leaves it, and must be the same after a remount.
        CREATE TABLE alias_tombstones (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            folder TEXT NOT NULL,
            path TEXT NOT NULL,
            deleted_at TEXT NOT NULL
        );
        CREATE INDEX alias_tombstones_folder ON alias_tombstones(folder);
        CREATE TRIGGER aliases_tombstone_on_delete AFTER DELETE ON aliases BEGIN
            INSERT INTO alias_tombstones (folder, path, deleted_at) VALUES (old.folder, old.path, strftime('%Y-%m-%d %H:%M:%f', 'now'));
        END;
        CREATE TRIGGER aliases_tombstone_on_move AFTER UPDATE OF folder, path ON aliases
            WHEN old.folder != new.folder OR old.path != new.path BEGIN
            INSERT INTO alias_tombstones (folder, path, deleted_at) VALUES (old.folder, old.path, strftime('%Y-%m-%d %H:%M:%f', 'now'));
        END;

        -- One counter that every change to names or blobs bumps, from any process: a mount polls
        -- it to notice changes made by other tsr commands.
        CREATE TABLE registry_generation (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            generation INTEGER NOT NULL
        );
        INSERT INTO registry_generation (id, generation) VALUES (1, 0);
        CREATE TRIGGER generation_alias_insert AFTER INSERT ON aliases BEGIN UPDATE registry_generation SET generation = generation + 1; END;
        CREATE TRIGGER generation_alias_update AFTER UPDATE ON aliases BEGIN UPDATE registry_generation SET generation = generation + 1; END;
        CREATE TRIGGER generation_alias_delete AFTER DELETE ON aliases BEGIN UPDATE registry_generation SET generation = generation + 1; END;
        CREATE TRIGGER generation_blob_insert AFTER INSERT ON blobs BEGIN UPDATE registry_generation SET generation = generation + 1; END;
        CREATE TRIGGER generation_blob_update AFTER UPDATE ON blobs BEGIN UPDATE registry_generation SET generation = generation + 1; END;
        CREATE TRIGGER generation_blob_delete AFTER DELETE ON blobs BEGIN UPDATE registry_generation SET generation = generation + 1; END;
        """

    static let v11 = """
        -- The bounded cache (tsr cache): when a blob was last read through any interface (written
        -- in batches, never per open), the blobs that are never evicted, and settings every
        -- process of the home obeys (cache_limit: bytes).
        ALTER TABLE blobs ADD COLUMN last_access_at TEXT;
        -- Blobs that are here, least recently used first: eviction walks it from the start and
        -- stops as soon as enough room is found.
        CREATE INDEX blobs_last_use ON blobs(COALESCE(last_access_at, created_at), sha256) WHERE state = 'present';
        CREATE TABLE pins (
            sha256 TEXT PRIMARY KEY NOT NULL REFERENCES blobs(sha256) ON DELETE CASCADE,
            created_at TEXT NOT NULL
        );
        CREATE TABLE settings (
            key TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL
        );
        -- The latest evictions (tsr cache shows them; the newest 100 are kept).
        CREATE TABLE evictions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            at TEXT NOT NULL
        );
        """

    static let v10 = """
        -- The service whose key a workflow says an entry needs (the seed format's requires_auth /
        -- auth_provider): `tsr workflow pull` asks for it before it starts, not after a refusal.
        ALTER TABLE workflow_entries ADD COLUMN auth_provider TEXT CHECK (auth_provider IN ('huggingface', 'civitai'));
        """

    static let v9 = """
        -- The last failed download of a blob that is not here (wrong bytes, an HTTP error, a
        -- stall): reads through the mount answer EIO at once until next_try_at instead of
        -- starting a transfer per read or page fault. attempts grows the wait (1 min … 1 h).
        -- A new source, the blob arriving, `tsr pull` or a remount ends the wait.
        CREATE TABLE fetch_failures (
            sha256 TEXT PRIMARY KEY NOT NULL REFERENCES blobs(sha256) ON DELETE CASCADE,
            reason TEXT NOT NULL,
            attempts INTEGER NOT NULL CHECK (attempts >= 1),
            failed_at TEXT NOT NULL,
            next_try_at TEXT NOT NULL
        );
        CREATE TRIGGER fetch_failures_new_source AFTER INSERT ON sources BEGIN
            DELETE FROM fetch_failures WHERE sha256 = NEW.sha256;
        END;
        CREATE TRIGGER fetch_failures_present AFTER UPDATE OF state ON blobs WHEN NEW.state = 'present' BEGIN
            DELETE FROM fetch_failures WHERE sha256 = NEW.sha256;
        END;
        """

    static let v3 = """
        -- The first bytes of a blob not downloaded yet (at least its safetensors header, rounded up
        -- to 128 KiB), fetched at registration so header readers need no download.
        CREATE TABLE blob_prefixes (
            sha256 TEXT PRIMARY KEY NOT NULL REFERENCES blobs(sha256) ON DELETE CASCADE,
            bytes BLOB NOT NULL
        );
        """

    static let v4 = """
        -- A download that stopped before it finished: its bytes wait in tmp/partial-<key>; the
        -- validator (ETag or Last-Modified) the first bytes came with goes into If-Range when it
        -- resumes, so bytes of changed content are never appended to old ones. url has no secrets.
        CREATE TABLE partial_downloads (
            key TEXT PRIMARY KEY NOT NULL,
            url TEXT NOT NULL,
            validator TEXT,
            total_size INTEGER,
            updated_at TEXT NOT NULL
        );
        """

    static let v5 = """
        -- Workflows added with `tsr workflow add` and what each needs. An entry's sha256 is NULL
        -- while it is unresolved (nothing in the registry or at a source matched; note says why).
        CREATE TABLE workflows (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            format TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE workflow_entries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            workflow_id INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
            folder TEXT NOT NULL,
            path TEXT NOT NULL,
            sha256 TEXT REFERENCES blobs(sha256),
            size INTEGER,
            url TEXT,
            display_name TEXT,
            required INTEGER NOT NULL DEFAULT 1,
            note TEXT,
            UNIQUE (workflow_id, folder, path)
        );
        CREATE INDEX workflow_entries_sha256 ON workflow_entries(sha256);
        -- The mount shows workflows/<name>/...: changes bump the generation, and a removed workflow
        -- leaves a tombstone so that workflows/ gets a new mtime.
        CREATE TRIGGER generation_workflow_insert AFTER INSERT ON workflows BEGIN UPDATE registry_generation SET generation = generation + 1; END;
        CREATE TRIGGER generation_workflow_update AFTER UPDATE ON workflows BEGIN UPDATE registry_generation SET generation = generation + 1; END;
        CREATE TRIGGER generation_workflow_delete AFTER DELETE ON workflows BEGIN
            UPDATE registry_generation SET generation = generation + 1;
            INSERT INTO alias_tombstones (folder, path, deleted_at) VALUES ('workflows', old.name || '/', strftime('%Y-%m-%d %H:%M:%f', 'now'));
        END;
        CREATE TRIGGER generation_workflow_entry_insert AFTER INSERT ON workflow_entries BEGIN UPDATE registry_generation SET generation = generation + 1; END;
        CREATE TRIGGER generation_workflow_entry_update AFTER UPDATE ON workflow_entries BEGIN UPDATE registry_generation SET generation = generation + 1; END;
        CREATE TRIGGER generation_workflow_entry_delete AFTER DELETE ON workflow_entries BEGIN UPDATE registry_generation SET generation = generation + 1; END;
        """

    static let v6 = """
        -- What `tsr db link` asked CivitAI about a SHA-256: a 404 is remembered (not asked again
        -- until --retry-unknown); a hit is also visible through file_hashes.
        CREATE TABLE civitai_lookups (
            sha256 TEXT PRIMARY KEY NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('found', 'not_found')),
            checked_at TEXT NOT NULL
        );
        -- Offline search over cached models: rowid = models.id.
        CREATE VIRTUAL TABLE models_fts USING fts5(name, tags, creator, words, tokenize = 'unicode61 remove_diacritics 2');
        CREATE INDEX model_versions_base ON model_versions(base_model);
        CREATE INDEX models_type ON models(type);
        -- Re-caching replaces a version's files and images: without these, each delete scans.
        CREATE INDEX version_files_version ON version_files(version_id);
        CREATE INDEX version_images_version ON version_images(version_id);
        CREATE INDEX image_resources_image ON image_resources(image_id);
        """

    static let v7 = """
        -- What changed, for mounts: each row names a name (folder, path) that appeared, changed or
        -- left, or a blob (sha256 only) whose state or size changed, or (all NULL) anything the
        -- read-only views derive from CivitAI data or workflows. A mount reads the rows after the
        -- last it saw and refreshes only what the kernel holds there. Old rows are pruned.
        CREATE TABLE mount_changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            folder TEXT,
            path TEXT,
            sha256 TEXT,
            at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
        );
        -- A directory's subdirectories without reading every name below it: names indexed by
        -- the directory they are in (the path up to its last '/'; '' at the top).
        CREATE INDEX aliases_directory ON aliases(folder, rtrim(path, replace(path, '/', '')));
        -- A directory's newest change from the index alone (a range of names, no table rows).
        CREATE INDEX aliases_updated ON aliases(folder, path, updated_at);
        -- A directory's newest removal without reading every removal of its folder.
        CREATE INDEX alias_tombstones_path ON alias_tombstones(folder, path);
        CREATE TRIGGER changes_alias_insert AFTER INSERT ON aliases BEGIN
            INSERT INTO mount_changes (folder, path, sha256) VALUES (new.folder, new.path, new.sha256);
        END;
        CREATE TRIGGER changes_alias_update AFTER UPDATE ON aliases BEGIN
            INSERT INTO mount_changes (folder, path, sha256) VALUES (old.folder, old.path, old.sha256);
            INSERT INTO mount_changes (folder, path, sha256) SELECT new.folder, new.path, new.sha256
                WHERE new.folder != old.folder OR new.path != old.path;
        END;
        CREATE TRIGGER changes_alias_delete AFTER DELETE ON aliases BEGIN
            INSERT INTO mount_changes (folder, path, sha256) VALUES (old.folder, old.path, old.sha256);
        END;
        CREATE TRIGGER changes_blob_insert AFTER INSERT ON blobs BEGIN
            INSERT INTO mount_changes (sha256) VALUES (new.sha256);
        END;
        CREATE TRIGGER changes_blob_update AFTER UPDATE ON blobs BEGIN
            INSERT INTO mount_changes (sha256) VALUES (new.sha256);
        END;
        CREATE TRIGGER changes_blob_delete AFTER DELETE ON blobs BEGIN
            INSERT INTO mount_changes (sha256) VALUES (old.sha256);
        END;
        CREATE TRIGGER changes_workflow_insert AFTER INSERT ON workflows BEGIN INSERT INTO mount_changes (folder) VALUES (NULL); END;
        CREATE TRIGGER changes_workflow_update AFTER UPDATE ON workflows BEGIN INSERT INTO mount_changes (folder) VALUES (NULL); END;
        CREATE TRIGGER changes_workflow_delete AFTER DELETE ON workflows BEGIN INSERT INTO mount_changes (folder) VALUES (NULL); END;
        CREATE TRIGGER changes_workflow_entry_insert AFTER INSERT ON workflow_entries BEGIN INSERT INTO mount_changes (folder) VALUES (NULL); END;
        CREATE TRIGGER changes_workflow_entry_update AFTER UPDATE ON workflow_entries BEGIN INSERT INTO mount_changes (folder) VALUES (NULL); END;
        CREATE TRIGGER changes_workflow_entry_delete AFTER DELETE ON workflow_entries BEGIN INSERT INTO mount_changes (folder) VALUES (NULL); END;
        """

    static let v8 = """
        -- Names by the directory they are in (the path up to its last '/'; '' at the top), newest
        -- last: a directory's subdirectories are found by skipping from one directory to the next,
        -- each one's newest change is the last entry of its range, and its names are one range —
        -- no query reads every name below a directory. Replaces the two v7 indexes it covers.
        DROP INDEX aliases_directory;
        DROP INDEX aliases_updated;
        CREATE INDEX aliases_directory_updated ON aliases(folder, rtrim(path, replace(path, '/', '')), updated_at);
        """
}
