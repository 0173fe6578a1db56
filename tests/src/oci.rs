//! OCI image layout writer (work in progress).
