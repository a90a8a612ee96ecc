//! The SQLite records schema, as the changes that built it.

/// Schema changes, applied in order; `PRAGMA user_version` counts those applied.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE image_records (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id          TEXT NOT NULL UNIQUE,
        original_prompt TEXT NOT NULL,
        english_prompt  TEXT NOT NULL,
        model           TEXT NOT NULL,
        local_path      TEXT NOT NULL,
        r2_url          TEXT,
        file_size       INTEGER NOT NULL,
        width           INTEGER NOT NULL,
        height          INTEGER NOT NULL,
        format          TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    );
    CREATE INDEX image_records_created_at ON image_records (created_at);
"#,
    // Keyword search over both prompts. The trigram tokenizer matches any substring of
    // three or more characters, which suits Chinese (no spaces between words) as well as
    // English; shorter keywords fall back to LIKE.
    r#"
    CREATE VIRTUAL TABLE image_records_fts USING fts5(
        original_prompt, english_prompt, content = 'image_records', content_rowid = 'id', tokenize = 'trigram'
    );
    INSERT INTO image_records_fts (image_records_fts) VALUES ('rebuild');
    CREATE TRIGGER image_records_fts_insert AFTER INSERT ON image_records BEGIN
        INSERT INTO image_records_fts (rowid, original_prompt, english_prompt)
        VALUES (new.id, new.original_prompt, new.english_prompt);
    END;
    CREATE TRIGGER image_records_fts_delete AFTER DELETE ON image_records BEGIN
        INSERT INTO image_records_fts (image_records_fts, rowid, original_prompt, english_prompt)
        VALUES ('delete', old.id, old.original_prompt, old.english_prompt);
    END;
    CREATE TRIGGER image_records_fts_update AFTER UPDATE ON image_records BEGIN
        INSERT INTO image_records_fts (image_records_fts, rowid, original_prompt, english_prompt)
        VALUES ('delete', old.id, old.original_prompt, old.english_prompt);
        INSERT INTO image_records_fts (rowid, original_prompt, english_prompt)
        VALUES (new.id, new.original_prompt, new.english_prompt);
    END;
    CREATE INDEX image_records_model_created ON image_records (model, created_at);
"#,
    r#"ALTER TABLE image_records ADD COLUMN r2_error TEXT;"#,
    r#"ALTER TABLE image_records ADD COLUMN user TEXT;"#,
    // Which AI-content labels the file carries; pictures stored before labels carry none.
    r#"
    ALTER TABLE image_records ADD COLUMN implicit_label INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE image_records ADD COLUMN explicit_label INTEGER NOT NULL DEFAULT 0;
"#,
    // Edits: what the job made, and its input pictures (a JSON array of what the client named).
    r#"
    ALTER TABLE image_records ADD COLUMN kind TEXT NOT NULL DEFAULT 'generate';
    ALTER TABLE image_records ADD COLUMN inputs TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX image_records_kind_created ON image_records (kind, created_at);
"#,
    // Keys own their work: the API key's name that queued the job (none: no key's).
    r#"
    ALTER TABLE image_records ADD COLUMN owner TEXT;
    CREATE INDEX image_records_owner_created ON image_records (owner, created_at);
"#,
    // What each picture cost (null: unknown), where that came from, and the provider's usage.
    r#"
    ALTER TABLE image_records ADD COLUMN cost_usd REAL;
    ALTER TABLE image_records ADD COLUMN cost_source TEXT NOT NULL DEFAULT 'unknown';
    ALTER TABLE image_records ADD COLUMN usage TEXT;
"#,
    // Which model was asked for when a fallback drew the picture, and why (JSON).
    r#"ALTER TABLE image_records ADD COLUMN fallback TEXT;"#,
    // The group a job belongs to, and whether it is the group's pick.
    r#"
    ALTER TABLE image_records ADD COLUMN group_id TEXT;
    ALTER TABLE image_records ADD COLUMN picked INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX image_records_group ON image_records (group_id) WHERE group_id IS NOT NULL;
"#,
];
