"""Everything that touches storage: filesystems and atomic writes, the results layout, result files, the response
store, sweep records, provenance. Imports the core and engine data types; never Ray."""
