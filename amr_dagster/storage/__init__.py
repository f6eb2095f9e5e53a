"""Where data lives: the data root's layout (``layout.DataLayout``, the one owner), the object
store under it (a local folder or S3), Parquet frames per asset partition, and the shared,
ordered state (MinHash store, module library) kept exact across workers by commit logs."""
