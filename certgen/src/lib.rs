//! certgen (work in progress).
