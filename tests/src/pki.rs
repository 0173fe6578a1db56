//! Certificates for tests (work in progress).
