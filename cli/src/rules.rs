//! The diagnostic codes the CLI adds to `policy`'s rules: problems with what the
//! command line named (files, workloads, calls). Each is a [`Rule`] like
//! `policy`'s, so its exit class is declared next to its code.

use policy::diagnostic::{Class, Rule, RULES};
use policy::{Diagnostic, Severity};

macro_rules! cli_rules {
    ($($name:ident = $code:literal, $summary:literal;)*) => {
        $(
            #[doc = $summary]
            pub const $name: Rule = Rule {
                code: $code,
                severity: Severity::Error,
                class: Class::Input,
                istio_code: None,
                summary: $summary,
            };
        )*
        /// Every rule the CLI adds, in `cli/README.md`'s order.
        pub const CLI_RULES: &[Rule] = &[$($name),*];
    };
}

cli_rules! {
    INPUT_UNREADABLE = "input-unreadable", "the file or folder cannot be opened or read";
    INPUT_NO_FILES = "input-no-files", "the paths hold no YAML or JSON file";
    INPUT_TOO_LARGE = "input-too-large", "the file is larger than the CLI reads";
    INPUT_NOT_UTF8 = "input-not-utf8", "the file is not UTF-8";
    INPUT_NO_SUCH_WORKLOAD = "input-no-such-workload", "describe matched no workload";
    INPUT_EMPTY_MATRIX = "input-empty-matrix", "matrix has no client and Service port pair";
    INPUT_NO_SUCH_CALL = "input-no-such-call", "tls-check cannot find the client or the Service";
    INPUT_NO_ENDPOINT = "input-no-endpoint", "tls-check finds no workload serving the Service port";
}

/// The rule a diagnostic's code belongs to: `policy`'s or the CLI's.
pub fn rule_of(d: &Diagnostic) -> Option<&'static Rule> {
    RULES.iter().chain(CLI_RULES).find(|r| r.code == d.code)
}

/// Whether `d` is bad input (exit 2) rather than a finding: its rule says so.
/// A code no rule declares can only come from a caller outside this crate's
/// tables; it is treated as bad input, so that it can never pass a pipeline.
pub fn is_input(d: &Diagnostic) -> bool {
    rule_of(d).is_none_or(Rule::is_input)
}
