//! The local mesh demo (the README's main command) and the manifest checks it shares
//! with the tests.

pub mod crd;
pub mod lab;
