//! What the reference `jmespath` crate answers, for comparing the
//! engine's `JmesPath` with it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::Value;

/// `query` over `data` by the `jmespath` crate (with the policy language's
/// `equals_ignore_case`), as JSON text.
pub fn reference(query: &str, data: &Value) -> Result<String, String> {
    let mut rt = jmespath::Runtime::new();
    rt.register_builtin_functions();
    rt.register_function(
        "equals_ignore_case",
        Box::new(
            |args: &[jmespath::Rcvar], _ctx: &mut jmespath::Context<'_>| {
                let eq = match (args.first().map(|a| &**a), args.get(1).map(|a| &**a)) {
                    (Some(jmespath::Variable::String(a)), Some(jmespath::Variable::String(b))) => {
                        a.to_lowercase() == b.to_lowercase()
                    }
                    _ => false,
                };
                Ok(jmespath::Rcvar::new(jmespath::Variable::Bool(eq)))
            },
        ),
    );
    let expr = rt.compile(query).map_err(|e| e.to_string())?;
    let result = expr.search(data).map_err(|e| e.to_string())?;
    serde_json::to_string(&*result).map_err(|e| e.to_string())
}
