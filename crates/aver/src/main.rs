//! `aver`: the attestation service and its tools, in one binary.
//!
//! A thin shell over the library crates: every subcommand parses its
//! arguments and calls one library function.

/// `println!` for a command's output, through [`files::write_out`]: a
/// reader that goes away (`aver … | head`) only loses the rest of the
/// output, where `println!` would panic.
macro_rules! outln {
    () => {
        $crate::files::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::files::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for a command's output (see [`outln!`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::files::write_out(format_args!($($arg)*))
    };
}

mod admin;
mod attest;
#[cfg(feature = "server")]
mod collateral;
#[cfg(feature = "server")]
mod demo;
#[cfg(all(feature = "server", feature = "tpm-client"))]
mod demo_tpm;
mod evidence;
mod files;
#[cfg(feature = "server")]
mod io_sched;
#[cfg(feature = "server")]
mod keys;
mod policy;
#[cfg(feature = "server")]
mod provider;
#[cfg(feature = "server")]
mod serve;
mod sim;
mod token;
mod tpm;
#[cfg(feature = "tpm-client")]
mod tpm_attest;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc. An attestation allocates and frees
/// a few buffers of 2–8 KB (the request body, the quote, its base64 text,
/// the token) on whichever pool thread runs it; glibc answers each of
/// those sizes by consolidating its fast bins under the arena lock, which a
/// `perf` profile of `aver serve` under load showed as ~11% of the
/// server's CPU (malloc, free, malloc_consolidate). mimalloc's per-thread
/// free lists serve them without that (BENCHMARKS.md, "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "aver",
    version,
    about = "Aver: a self-hostable remote attestation service, compatible with Azure Attestation",
    long_about = "Aver verifies enclave evidence (Intel SGX DCAP quotes, OpenEnclave reports), \
confidential-VM evidence (Intel TDX quotes, AMD SEV-SNP reports, Azure confidential VMs' vTPM and \
HCL evidence) and TPM evidence (TCG boot log and quote), evaluates it against an attestation \
policy in Azure's claim-rule language, and issues signed attestation tokens that relying parties \
verify through OpenID metadata and JWKS."
)]
struct Cli {
    /// Log lines as text (for people) or JSON objects, one per line (for log
    /// collectors). Every line of a request carries its request id.
    #[arg(
        long,
        global = true,
        env = "AVER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the attestation service (HTTPS).
    #[cfg(feature = "server")]
    Serve(Box<serve::ServeArgs>),
    /// Walk the whole workflow: enclave evidence -> service -> token -> relying party.
    #[cfg(feature = "server")]
    Demo(demo::DemoArgs),
    /// Send evidence to a service and print the token (a client).
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// Work with attestation tokens (relying party).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Verify evidence offline, with no service.
    #[command(subcommand)]
    Evidence(evidence::EvidenceCommand),
    /// Evaluate and hash attestation policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Manage policy signers of an isolated provider.
    #[command(subcommand)]
    Signer(SignerCommand),
    /// Create, list and delete attestation providers (tenants).
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// List, rotate and retire a provider's token-signing keys.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The simulated SGX enclave used by tests and the demo.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// DCAP collateral in the service's shared cache (import, status).
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Collateral(collateral::CollateralCommand),
    /// Print the service's OpenAPI document (what `aver serve` serves at
    /// /openapi.json), with no service.
    #[cfg(feature = "server")]
    Openapi,
}

#[derive(Subcommand)]
enum SignerCommand {
    /// List the trusted policy signers.
    List {
        #[command(flatten)]
        connection: admin::Connection,
    },
    /// Add a policy signer; the request is signed by a current signer.
    Add {
        /// The certificate to add (PEM).
        #[arg(long)]
        cert: std::path::PathBuf,
        #[command(flatten)]
        signer: admin::SignerFiles,
        #[command(flatten)]
        connection: admin::Connection,
    },
    /// Remove a policy signer; the request is signed by a current signer.
    Remove {
        /// The certificate to remove (PEM).
        #[arg(long)]
        cert: std::path::PathBuf,
        #[command(flatten)]
        signer: admin::SignerFiles,
        #[command(flatten)]
        connection: admin::Connection,
    },
}

#[cfg(feature = "server")]
#[derive(Subcommand)]
enum ProviderCommand {
    /// Create a provider; prints its admin key once.
    Create {
        /// Name: 1-63 of a-z, 0-9 and -.
        name: String,
        /// Policy-signer certificates (PEM); makes the provider isolated.
        #[arg(long)]
        signers: Vec<std::path::PathBuf>,
        /// A host name that routes to this provider.
        #[arg(long)]
        host: Option<String>,
        #[command(flatten)]
        store: provider::StoreArgs,
    },
    /// List providers: name, mode, host.
    List {
        #[command(flatten)]
        store: provider::StoreArgs,
    },
    /// Show or change a provider's settings.
    Configure {
        name: String,
        /// Smallest RSA key a policy signer may use (default 2048). Lowering
        /// it (to 1024 at least) admits signers that Azure accepts, such as
        /// the keys of Microsoft's JS SDK test suite, at the cost of
        /// trusting keys within reach of a well-funded attacker.
        #[arg(long)]
        min_signer_rsa_bits: Option<usize>,
        /// Intel TCB statuses this provider accepts for SGX quotes
        /// (repeatable or comma-separated; `default` for the service's).
        #[arg(long, value_delimiter = ',')]
        accept_tcb_status: Vec<String>,
        /// Algorithm of the next token-signing key: RS256 (default; Azure's
        /// SDKs accept only it) or ES256 (P-256). Takes effect at the next
        /// `aver keys rotate`.
        #[arg(long)]
        token_signing_alg: Option<String>,
        /// Most attestations of this provider in flight at once on each
        /// replica (queued or running); beyond it, 503 ServerBusy. `none`
        /// removes the cap.
        #[arg(long)]
        max_in_flight: Option<String>,
        #[command(flatten)]
        store: provider::StoreArgs,
    },
    /// Delete a provider and everything it owns.
    Delete {
        name: String,
        #[command(flatten)]
        store: provider::StoreArgs,
    },
}

async fn signer(cmd: SignerCommand) -> anyhow::Result<std::process::ExitCode> {
    let (add, cert, signer, connection) = match cmd {
        SignerCommand::List { connection } => {
            for der in connection.admin()?.signers().await? {
                outln!("{}", aver_token::policy::thumbprint(&der));
            }
            return Ok(std::process::ExitCode::SUCCESS);
        }
        SignerCommand::Add {
            cert,
            signer,
            connection,
        } => (true, cert, signer, connection),
        SignerCommand::Remove {
            cert,
            signer,
            connection,
        } => (false, cert, signer, connection),
    };
    let signer = signer.load()?.ok_or_else(|| {
        anyhow::anyhow!("--signing-key and --signing-cert of a current signer are required")
    })?;
    let der = admin::read_certificate(&cert)?;
    let jws = aver_token::policy::certificate_management(&der, &signer)?;
    let result = connection.admin()?.modify_signers(add, &jws).await?;
    admin::print_claims(&result);
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(feature = "server")]
fn provider(cmd: ProviderCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        ProviderCommand::Create {
            name,
            signers,
            host,
            store,
        } => provider::provider_create(&store, &name, &signers, host),
        ProviderCommand::List { store } => provider::provider_list(&store),
        ProviderCommand::Configure {
            name,
            min_signer_rsa_bits,
            accept_tcb_status,
            token_signing_alg,
            max_in_flight,
            store,
        } => provider::provider_configure(
            &store,
            &name,
            min_signer_rsa_bits,
            &accept_tcb_status,
            token_signing_alg,
            max_in_flight.as_deref(),
        ),
        ProviderCommand::Delete { name, store } => provider::provider_delete(&store, &name),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demos print their own story; the in-process service's request
    // log would drown it unless asked for.
    #[cfg(feature = "server")]
    let default_level = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    #[cfg(not(feature = "server"))]
    let default_level = "info";
    let filter = tracing_subscriber::EnvFilter::try_from_env("AVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The current span (the request, with its id) on every line.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    // `aver serve` sizes its runtime from its configuration (the
    // connection threads; verification has threads of its own); every
    // other command takes tokio's default.
    #[cfg(feature = "server")]
    let cli = match cli.command {
        Command::Serve(args) => return serve::main(*args),
        command => Cli { command, ..cli },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            // Taken above, on its own runtime; here only for the match to
            // be complete (it would serve on the default runtime).
            #[cfg(feature = "server")]
            Command::Serve(args) => serve::run(serve::resolve(*args)?.config).await,
            #[cfg(feature = "server")]
            Command::Demo(args) => demo::run(args).await,
            Command::Attest(cmd) => attest::run(cmd).await,
            Command::Token(cmd) => token::run(cmd).await,
            Command::Evidence(cmd) => evidence::run(cmd),
            Command::Policy(cmd) => policy::run(cmd).await,
            Command::Signer(cmd) => signer(cmd).await,
            // Store commands block on the store (PostgreSQL's client runs a
            // runtime of its own, which cannot start on a thread that
            // drives this one): they run outside this runtime's context.
            #[cfg(feature = "server")]
            Command::Provider(cmd) => tokio::task::block_in_place(|| provider(cmd)),
            #[cfg(feature = "server")]
            Command::Keys(cmd) => keys::run(cmd).await,
            Command::Sim(cmd) => sim::run(cmd),
            #[cfg(feature = "server")]
            Command::Collateral(cmd) => tokio::task::block_in_place(|| collateral::run(cmd)),
            #[cfg(feature = "server")]
            Command::Openapi => {
                outln!("{}", aver_server::openapi::document_json());
                Ok(std::process::ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once. Many library errors put their
/// source in their own message as well ("I/O on log.bin: X" whose source is
/// X), and anyhow's `{:#}` then printed X twice.
/// A service whose certificate this machine does not trust (a self-signed
/// `aver serve`, most often) also gets the way out.
fn describe(e: &anyhow::Error) -> String {
    let mut text = aver_client::cause_chain(e.as_ref());
    if text.contains("invalid peer certificate") {
        text.push_str(
            " (the service's TLS certificate does not chain to a CA trusted here: pass its CA \
             certificate with --ca; a self-signed `aver serve` writes it to <data-dir>/tls/cert.pem)",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::describe;

    /// As `#[error("I/O on {path}: {source}")]` with thiserror: the
    /// source is in the message and is also the error's `source()`.
    #[derive(Debug)]
    struct Repeats {
        path: String,
        source: std::io::Error,
    }

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "I/O on {}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn each_cause_is_said_once_and_an_untrusted_service_gets_the_way_out() {
        let e = anyhow::Error::new(Repeats {
            path: "log.bin".into(),
            source: std::io::Error::other("disk on fire"),
        })
        .context("reading the event log");
        assert_eq!(
            describe(&e),
            "reading the event log: I/O on log.bin: disk on fire"
        );
        // A cause the message does not repeat is kept.
        let e = anyhow::Error::new(std::io::Error::other("refused")).context("connecting");
        assert_eq!(describe(&e), "connecting: refused");
        // An untrusted service certificate says how to trust it.
        let e =
            anyhow::anyhow!("cannot reach the service: invalid peer certificate: UnknownIssuer");
        assert!(describe(&e).ends_with(
            "with --ca; a self-signed `aver serve` writes it to <data-dir>/tls/cert.pem)"
        ));
    }
}
