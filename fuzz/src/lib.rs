//! The fuzz targets' properties, one module per crate under test. The corpus
//! replay tests of each crate include the same files, so stable `cargo test`
//! checks the checked-in corpus against exactly these properties.
pub mod certgen_checks;
pub mod filter_checks;
pub mod policy_checks;
