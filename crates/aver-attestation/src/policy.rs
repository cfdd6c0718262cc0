//! Policies as the attestation flow uses them: parsed once, with their hash
//! and the properties their configuration rules set, evaluated under a
//! budget.

use aver_policy::{Budget, Decision, Evaluation, Policy};
use serde_json::{Map, Value};

use crate::error::AttestError;
use crate::registry::AttestationType;

/// A policy in force, parsed once when it is set or loaded.
#[derive(Debug)]
pub struct ActivePolicy {
    pub text: String,
    pub policy: Policy,
    /// `x-ms-policy-hash` of `text`.
    pub hash: String,
    /// The exact JWS that set it (an unsigned JWS of the text for defaults).
    pub jws: String,
    /// The policy signer's JWK, when the policy was set signed.
    pub signer: Option<Value>,
    /// Properties issued by the configuration rules (which do not depend
    /// on evidence): TPM `required_pcr_mask`, `require_valid_aik_cert`, ...
    pub properties: Map<String, Value>,
}

impl ActivePolicy {
    /// Parses `text` and evaluates its rules once with no evidence, under
    /// `budget`, for the configuration-rule properties. A policy whose rules
    /// fail even without evidence is refused: silently dropping its
    /// configuration (e.g. `require_valid_aik_cert`) would make the service
    /// more permissive than the policy says.
    pub fn new(
        text: &str,
        jws: String,
        signer: Option<Value>,
        budget: &Budget,
    ) -> Result<Self, AttestError> {
        let policy = Policy::parse(text).map_err(parse_error)?;
        let properties = match policy.evaluate_with_budget(&[], budget) {
            Ok(evaluation) => evaluation.properties_json(),
            Err(e) => {
                return Err(AttestError::rejected(
                    e.code(),
                    format!("the policy's rules fail even before any evidence is seen: {e}"),
                ));
            }
        };
        Ok(ActivePolicy {
            text: text.to_string(),
            hash: aver_policy::policy_hash(text),
            policy,
            jws,
            signer,
            properties,
        })
    }

    /// A policy from text alone (defaults, offline tools).
    pub fn from_text(text: &str, signer: Option<Value>) -> Result<Self, AttestError> {
        Self::new(
            text,
            aver_token::policy::unsigned(Some(text)),
            signer,
            &Budget::default(),
        )
    }
}

/// A policy sent with the request (`draftPolicyForAttestation`): smaller
/// than stored ones ([`aver_policy::MAX_DRAFT_POLICY_BYTES`]), since anyone
/// may send one.
#[derive(Debug)]
pub struct DraftPolicy {
    pub text: String,
    pub policy: Policy,
}

impl DraftPolicy {
    pub fn parse(text: &str) -> Result<Self, AttestError> {
        let policy = Policy::parse_with_limit(text, aver_policy::MAX_DRAFT_POLICY_BYTES)
            .map_err(parse_error)?;
        Ok(DraftPolicy {
            text: text.to_string(),
            policy,
        })
    }
}

fn parse_error(e: aver_policy::ParseError) -> AttestError {
    AttestError::rejected(e.code(), e.to_string())
}

/// Which policy decides: the provider's, or a draft given with the request.
#[derive(Debug, Clone, Copy)]
pub enum PolicyChoice<'a> {
    Active(&'a ActivePolicy),
    Draft(&'a DraftPolicy),
}

impl PolicyChoice<'_> {
    pub fn policy(&self) -> &Policy {
        match self {
            PolicyChoice::Active(p) => &p.policy,
            PolicyChoice::Draft(d) => &d.policy,
        }
    }

    /// `x-ms-policy-hash`.
    pub fn hash(&self) -> String {
        match self {
            PolicyChoice::Active(p) => p.hash.clone(),
            PolicyChoice::Draft(d) => aver_policy::policy_hash(&d.text),
        }
    }

    pub fn signer(&self) -> Option<Value> {
        match self {
            PolicyChoice::Active(p) => p.signer.clone(),
            PolicyChoice::Draft(_) => None,
        }
    }

    pub fn is_draft(&self) -> bool {
        matches!(self, PolicyChoice::Draft(_))
    }
}

/// Evaluates `policy` over the service's claims (plus the legacy
/// `$`-aliases for the types that have them) under `budget`. A deny is
/// `PolicyEvaluationError` naming the rule; running out of budget has its
/// own code (`PolicyMemoryLimitExceeded`, ...).
pub fn evaluate(
    ty: &AttestationType,
    policy: &Policy,
    service_claims: &Map<String, Value>,
    budget: &Budget,
) -> Result<Evaluation, AttestError> {
    let incoming = aver_policy::claims_from_json(service_claims);
    let incoming = if ty.legacy_aliases {
        aver_policy::with_legacy_aliases(&incoming)
    } else {
        incoming
    };
    let evaluation = policy
        .evaluate_with_budget(&incoming, budget)
        .map_err(|e| AttestError::rejected(e.code(), e.to_string()))?;
    if evaluation.decision == Decision::Deny {
        let reason = evaluation
            .deny_reason
            .clone()
            .unwrap_or_else(|| "no rule permitted the request".into());
        return Err(AttestError::rejected(
            "PolicyEvaluationError",
            format!("A Deny claim was issued, authorization failed: {reason}"),
        ));
    }
    Ok(evaluation)
}
