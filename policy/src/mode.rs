//! The two mode vocabularies: a server's PeerAuthentication mTLS mode and a
//! client's DestinationRule TLS mode.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `PeerAuthentication.spec.mtls.mode` (istio/api `peer_authentication.proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from the parent level (mesh → namespace → workload → port).
    Unset,
    /// Plaintext only.
    Disable,
    /// Plaintext and Istio mTLS.
    Permissive,
    /// Istio mTLS only; plaintext connections are reset.
    Strict,
}

/// `DestinationRule.spec.trafficPolicy.tls.mode` (istio/api `destination_rule.proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    /// Plaintext to the upstream.
    Disable,
    /// TLS without a client certificate (not Istio mTLS).
    Simple,
    /// TLS with a user-supplied client certificate (not Istio mTLS).
    Mutual,
    /// Istio mTLS with the workload's own SPIFFE certificate.
    IstioMutual,
}

/// A mode name that Istio does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModeError {
    /// Not one of UNSET, DISABLE, PERMISSIVE, STRICT.
    #[error("unknown mTLS mode {0:?}: use one of UNSET, DISABLE, PERMISSIVE, STRICT")]
    UnknownMtls(String),
    /// Not one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL.
    #[error("unknown TLS mode {0:?}: use one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL")]
    UnknownTls(String),
}

impl MtlsMode {
    /// Every mode, in Istio's enum order.
    pub const ALL: [MtlsMode; 4] = [Self::Unset, Self::Disable, Self::Permissive, Self::Strict];

    /// Istio's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unset => "UNSET",
            Self::Disable => "DISABLE",
            Self::Permissive => "PERMISSIVE",
            Self::Strict => "STRICT",
        }
    }

    /// The mode of a level below this one that declares `declared`: its own
    /// mode, or this one when it declares UNSET (Istio's inheritance, mesh →
    /// namespace → workload → port).
    pub fn overridden_by(self, declared: MtlsMode) -> MtlsMode {
        if declared == Self::Unset {
            self
        } else {
            declared
        }
    }

    /// Whether a server in this (resolved) mode accepts an Istio mTLS connection.
    /// `Unset` is treated as PERMISSIVE, Istio's default when nothing applies.
    pub fn accepts_mtls(self) -> bool {
        !matches!(self, Self::Disable)
    }

    /// Whether a server in this (resolved) mode accepts plaintext.
    pub fn accepts_plaintext(self) -> bool {
        !matches!(self, Self::Strict)
    }
}

impl TlsMode {
    /// Istio's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "DISABLE",
            Self::Simple => "SIMPLE",
            Self::Mutual => "MUTUAL",
            Self::IstioMutual => "ISTIO_MUTUAL",
        }
    }
}

impl fmt::Display for MtlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MtlsMode {
    type Err = ModeError;

    /// `Ok` for Istio's four names (exact, upper case, as the CRD enum requires);
    /// `Err(ModeError::UnknownMtls)` otherwise.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ModeError::UnknownMtls(s.to_string()))
    }
}

impl FromStr for TlsMode {
    type Err = ModeError;

    /// `Ok` for Istio's four names; `Err(ModeError::UnknownTls)` otherwise.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Disable, Self::Simple, Self::Mutual, Self::IstioMutual]
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ModeError::UnknownTls(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtls_modes_round_trip_through_their_istio_names() {
        for m in MtlsMode::ALL {
            assert_eq!(m.as_str().parse::<MtlsMode>(), Ok(m));
        }
    }

    #[test]
    fn lower_case_or_unknown_mode_names_are_rejected() {
        assert!("strict".parse::<MtlsMode>().is_err());
        assert!("MUTUAL".parse::<MtlsMode>().is_err());
        assert_eq!("ISTIO_MUTUAL".parse::<TlsMode>(), Ok(TlsMode::IstioMutual));
        assert!("STRICT".parse::<TlsMode>().is_err());
    }

    #[test]
    fn unset_inherits_the_parent_mode_and_anything_else_overrides_it() {
        for parent in MtlsMode::ALL {
            assert_eq!(parent.overridden_by(MtlsMode::Unset), parent);
            for child in [MtlsMode::Disable, MtlsMode::Permissive, MtlsMode::Strict] {
                assert_eq!(parent.overridden_by(child), child);
            }
        }
    }

    #[test]
    fn strict_refuses_plaintext_and_disable_refuses_mtls() {
        assert!(!MtlsMode::Strict.accepts_plaintext());
        assert!(MtlsMode::Strict.accepts_mtls());
        assert!(!MtlsMode::Disable.accepts_mtls());
        assert!(MtlsMode::Permissive.accepts_plaintext() && MtlsMode::Permissive.accepts_mtls());
    }
}
