"""One router per resource: runs, clusters, images, search (predict and text search)."""
