"""The SQLite catalogue's tables. One file, `catalogue.db`, in WAL mode with a single writer."""

# Version 7: a run's assignments are written to runs/<key>/assignments.npz; the assignments table
# holds only the rows of runs saved before.
# Version 8: a run's results (runs.info, run.json's "info") are stored in the typed format of
# records.RunRecord.to_stored; the first writer of an older workspace rewrites its runs' rows.
SCHEMA_VERSION = 8
# From this version on an older workspace differs only in its runs' rows, which read in either format
# (RunRecord.from_stored): opening one to read writes nothing, and the first writer upgrades it on
# disk. An older one lacks tables or columns, so opening it upgrades it at once.
READS_AS_IS_FROM = 7

# Columns added after version 1: (table, column, declaration). Opening an older workspace adds them.
ADDED_COLUMNS = (
    ("assignments", "how", "TEXT NOT NULL DEFAULT 'fit'"),
    # Version 6, videos: a key-frame row's video, time in seconds and shot index; a video row's settings.
    ("images", "source_path", "TEXT"),
    ("images", "timestamp", "REAL"),
    ("images", "shot", "INTEGER"),
    ("images", "video_params", "TEXT"),
)

# The images table's columns in the order ImageRecord takes them.
IMAGE_COLUMNS = ("id, path, size, mtime_ns, content_hash, format, width, height, status, "
                  "skip_stage, skip_reason, source_path, timestamp, shot, video_params")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
-- One row per file ever seen. status: ok | skipped | missing | video. A video file's row has status video
-- (or skipped when no frame could be decoded); each of its key-frames is a row of its own, path
-- VIDEO#t=SECONDS, with source_path, timestamp and shot (columns added by ADDED_COLUMNS), its pixels in
-- the frames table; a video damaged part-way also gets a skipped row VIDEO#t=SECONDS- from the damage on.
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
  -- the clusterer left out, joined to a cluster by the noise=attach option; duplicate: left out of the
  -- fit by cluster --dedup, placed with its duplicate group's keeper.
  how TEXT NOT NULL DEFAULT 'fit',
  PRIMARY KEY(run_key, image_id)
);
-- Names of a run's clusters, one row per (cluster, source): manual | imagenet | zero-shot | vlm.
-- A failed try of a source keeps that source's earlier name and records the error beside it.
CREATE TABLE IF NOT EXISTS cluster_names(
  run_key TEXT NOT NULL REFERENCES runs(key) ON DELETE CASCADE,
  cluster INTEGER NOT NULL,
  source TEXT NOT NULL,
  name TEXT NOT NULL,
  confidence REAL,
  candidates TEXT NOT NULL,
  error TEXT,
  created_at REAL NOT NULL,
  PRIMARY KEY(run_key, cluster, source)
);
-- Answers of remote namers (a VLM), keyed by a hash of (model, prompt, the images' content hashes).
CREATE TABLE IF NOT EXISTS namer_answers(
  key TEXT PRIMARY KEY,
  source TEXT NOT NULL,
  answer TEXT NOT NULL,
  created_at REAL NOT NULL
);
-- How stable a run's clusters are under refits with other seeds (imgcluster stability): per-cluster
-- stability, the seeds and settings, and consensus figures, as JSON; accumulates like evaluations.
CREATE TABLE IF NOT EXISTS stability(
  id INTEGER PRIMARY KEY,
  run_key TEXT NOT NULL REFERENCES runs(key) ON DELETE CASCADE,
  created_at REAL NOT NULL,
  result TEXT NOT NULL
);
-- Scores of a run against known labels; runs stay immutable, evaluations accumulate beside them.
CREATE TABLE IF NOT EXISTS evaluations(
  id INTEGER PRIMARY KEY,
  run_key TEXT NOT NULL REFERENCES runs(key) ON DELETE CASCADE,
  created_at REAL NOT NULL,
  labels_source TEXT NOT NULL,
  metrics TEXT NOT NULL
);
-- Perceptual hashes by content (imgcluster duplicates), one row per (content, algorithm): the hash's
-- bits as hex. New in version 5; older workspaces get the empty table when opened.
CREATE TABLE IF NOT EXISTS perceptual_hashes(
  content_hash TEXT NOT NULL,
  algorithm TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY(content_hash, algorithm)
);
-- Key-frames of videos as JPEG, by content hash (the hash of these bytes): what embedding and
-- thumbnails decode, so a video is decoded once. New in version 6.
CREATE TABLE IF NOT EXISTS frames(
  content_hash TEXT PRIMARY KEY,
  jpeg BLOB NOT NULL
);
"""
