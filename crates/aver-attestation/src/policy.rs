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
    /// The SGX TCB baseline its configuration rules select.
    pub tcb_baseline: TcbBaseline,
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
        let tcb_baseline = tcb_baseline(&properties)?;
        Ok(ActivePolicy {
            text: text.to_string(),
            hash: aver_policy::policy_hash(text),
            policy,
            jws,
            signer,
            properties,
            tcb_baseline,
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

impl DraftPolicy {
    /// The TCB baseline the draft's configuration rules select. Only a
    /// draft that has configuration rules is evaluated for it (with no
    /// evidence, under `budget`): the others cost nothing here.
    pub fn tcb_baseline(&self, budget: &Budget) -> Result<TcbBaseline, AttestError> {
        let has_rules = self
            .policy
            .rules(aver_policy::Section::Configuration)
            .is_some_and(|rules| !rules.is_empty());
        if !has_rules {
            return Ok(TcbBaseline::ServiceDefault);
        }
        let evaluation = self
            .policy
            .evaluate_with_budget(&[], budget)
            .map_err(|e| AttestError::rejected(e.code(), e.to_string()))?;
        tcb_baseline(&evaluation.properties_json())
    }
}

/// The property a policy's configuration rules set to choose the SGX TCB
/// baseline, as Azure names it.
pub const TCB_IDENTIFIER: &str = "x-ms-sgx-tcbidentifier";

/// Which Intel TCB evaluation data number judges an SGX quote: Azure's
/// *TCB baseline*. A policy pins one with
/// `issueproperty(type="x-ms-sgx-tcbidentifier", value="16")`;
/// `"azuredefault"`, or no such rule, leaves the choice to the service
/// (`--tcb-baseline`, else the newest collateral held).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcbBaseline {
    #[default]
    ServiceDefault,
    EvaluationDataNumber(u32),
}

impl TcbBaseline {
    /// The identifier as `/tcbbaselines` and the property spell it.
    pub fn identifier(&self) -> String {
        match self {
            TcbBaseline::ServiceDefault => "azuredefault".into(),
            TcbBaseline::EvaluationDataNumber(n) => n.to_string(),
        }
    }
}

/// Reads the TCB baseline from a policy's configuration properties. The
/// value is `"azuredefault"` or a TCB evaluation data number (a string of
/// digits, as Azure's examples write it, or an integer); anything else is
/// `TcbBaselineInvalid`, so that a typo is refused when the policy is set
/// rather than silently judging quotes by another baseline.
pub fn tcb_baseline(properties: &Map<String, Value>) -> Result<TcbBaseline, AttestError> {
    let Some(value) = properties.get(TCB_IDENTIFIER) else {
        return Ok(TcbBaseline::ServiceDefault);
    };
    let invalid = |what: String| {
        AttestError::rejected(
            "TcbBaselineInvalid",
            format!(
                "{TCB_IDENTIFIER} must be \"azuredefault\" or a TCB evaluation data number such as \"17\", got {what}"
            ),
        )
    };
    let number = match value {
        Value::String(s) if s.eq_ignore_ascii_case("azuredefault") => {
            return Ok(TcbBaseline::ServiceDefault);
        }
        Value::String(s)
            if !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse::<u32>().ok()
        }
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        // Several rules issuing the property: ambiguous, refused.
        Value::Array(_) => return Err(invalid("several values".into())),
        other => return Err(invalid(other.to_string())),
    };
    match number {
        Some(n) => Ok(TcbBaseline::EvaluationDataNumber(n)),
        None => Err(invalid(value.to_string())),
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

    /// The SGX TCB baseline the policy selects (a draft's is read here,
    /// under `budget`; a stored policy's was read when it was set).
    pub fn tcb_baseline(&self, budget: &Budget) -> Result<TcbBaseline, AttestError> {
        match self {
            PolicyChoice::Active(p) => Ok(p.tcb_baseline),
            PolicyChoice::Draft(d) => d.tcb_baseline(budget),
        }
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
    let mut incoming = aver_policy::claims_from_json(service_claims);
    if ty.legacy_aliases {
        aver_policy::add_legacy_aliases(&mut incoming);
    }
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
