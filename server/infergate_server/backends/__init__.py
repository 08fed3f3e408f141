"""Model runtimes. Each backend module imports its runtime lazily and never imports another backend."""
