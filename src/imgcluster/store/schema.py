"""The SQLite catalogue's tables. One file, `catalogue.db`, in WAL mode with a single writer."""

SCHEMA_VERSION = 2

# Columns added after version 1: (table, column, declaration). Opening an older workspace adds them.
ADDED_COLUMNS = (
    ("assignments", "how", "TEXT NOT NULL DEFAULT 'fit'"),
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
-- One row per file ever seen. status: ok | skipped | missing.
CREATE TABLE IF NOT EXISTS images(
  id INTEGER PRIMARY KEY,
  path TEXT UNIQUE NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  content_hash TEXT,
  format TEXT,
  width INTEGER,
  height INTEGER,
  status TEXT NOT NULL,
  skip_stage TEXT,
  skip_reason TEXT,
  scanned_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS images_hash ON images(content_hash);
-- Embeddings are cached by content, so a renamed or copied file is never embedded twice.
CREATE TABLE IF NOT EXISTS embeddings(
  content_hash TEXT NOT NULL,
  model_id TEXT NOT NULL,
  shard TEXT NOT NULL,
  row INTEGER NOT NULL,
  PRIMARY KEY(content_hash, model_id)
);
CREATE TABLE IF NOT EXISTS models(
  model_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  dim INTEGER NOT NULL,
  info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS thumbnails(
  content_hash TEXT PRIMARY KEY,
  jpeg BLOB NOT NULL,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL
);
-- A run row is written in the same transaction as its assignments, after its files exist.
CREATE TABLE IF NOT EXISTS runs(
  key TEXT PRIMARY KEY,
  created_at REAL NOT NULL,
  root TEXT NOT NULL,
  model_id TEXT NOT NULL,
  model_name TEXT NOT NULL,
  n_images INTEGER NOT NULL,
  n_clusters INTEGER NOT NULL,
  config TEXT NOT NULL,
  info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments(
  run_key TEXT NOT NULL REFERENCES runs(key) ON DELETE CASCADE,
  image_id INTEGER NOT NULL,
  cluster INTEGER NOT NULL,
  membership_probability REAL NOT NULL,
  x REAL NOT NULL,
  y REAL NOT NULL,
  -- fit: placed by the clusterer; filed: by the k-NN predictor (fit on a sample); attached: noise
  -- the clusterer left out, joined to a cluster by the noise=attach option.
  how TEXT NOT NULL DEFAULT 'fit',
  PRIMARY KEY(run_key, image_id)
);
-- Scores of a run against known labels; runs stay immutable, evaluations accumulate beside them.
CREATE TABLE IF NOT EXISTS evaluations(
  id INTEGER PRIMARY KEY,
  run_key TEXT NOT NULL REFERENCES runs(key) ON DELETE CASCADE,
  created_at REAL NOT NULL,
  labels_source TEXT NOT NULL,
  metrics TEXT NOT NULL
);
"""
