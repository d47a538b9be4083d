//! The `backroom` command: parses the command line and calls the library.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use backroom::accounts::roles::Role;
use backroom::accounts::staff::{NewStaff, create_staff};
use backroom::app;
use backroom::catalog::demo;
use backroom::catalog::import::{self, ImportOptions};
use backroom::catalog::inventory::Actor;
use backroom::messaging::jobs::run_workers;
use backroom::platform::config::Config;
use backroom::platform::db::Db;
use backroom::platform::telemetry;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "backroom", version, about = "The backend of an online store and its content site.")]
struct Cli {
    /// The configuration file; `BACKROOM_*` environment variables override it.
    #[arg(long, global = true, env = "BACKROOM_CONFIG", default_value = "backroom.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server and the job workers (migrations are applied first).
    Serve {
        /// Seed a sample shop (categories, collections, 240 products with stock) when the
        /// database has no products.
        #[arg(long)]
        demo: bool,
    },
    /// Seed a sample shop into a database that has no products yet.
    Demo {
        /// How many products.
        #[arg(long, default_value_t = 240)]
        products: usize,
        /// Write the products to this CSV file (in the import layout) instead of importing
        /// them; the categories they name are still created.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Run only the job workers, for deployments that keep them apart from HTTP.
    Worker,
    /// Apply the database migrations and exit.
    Migrate,
    /// Manage staff users.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Bring data in from a file.
    Import {
        #[command(subcommand)]
        what: ImportCommand,
    },
    /// Write data out to a file.
    Export {
        #[command(subcommand)]
        what: ExportCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Work with the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a staff user (an owner by default). The password is prompted for on a
    /// terminal, or read from the first line of standard input.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, value_enum, default_value_t = RoleArg::Owner)]
        role: RoleArg,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Products from CSV, one row per variant (the layout is in docs/CSV.md): products are
    /// matched by handle and variants by SKU, so importing a file twice changes nothing.
    /// Every row is checked first; by default one bad row stops the whole import.
    Products {
        file: PathBuf,
        /// Check the file and tell what would change, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write the products whose rows are good and report the others.
        #[arg(long)]
        skip_invalid: bool,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// Every product as CSV, one row per variant, in the layout import reads.
    Products {
        /// Where to write; standard output when absent.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Owner,
    Admin,
    Staff,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Owner => Role::Owner,
            RoleArg::Admin => Role::Admin,
            RoleArg::Staff => Role::Staff,
        }
    }
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print it, secrets hidden.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        println!("{}", app::openapi_json());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("backroom: {err}");
            return ExitCode::from(2);
        }
    };
    if let Command::Config { command: ConfigCommand::Check } = cli.command {
        println!("{config:#?}");
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("backroom: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("backroom: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { demo } => serve(config, demo).await,
        Command::Demo { products, csv } => {
            let state = app::build_state(config).await?;
            let done = match &csv {
                Some(path) => {
                    async {
                        demo::create_categories(&state).await?;
                        std::fs::write(path, demo::products_csv(products)).map_err(|err| {
                            backroom::platform::error::AppError::internal(anyhow::anyhow!(
                                "cannot write {}: {err}",
                                path.display()
                            ))
                        })?;
                        Ok(true)
                    }
                    .await
                }
                None => demo::seed(&state, products).await,
            };
            state.db.close().await;
            match done.map_err(|err| anyhow::anyhow!("{err}"))? {
                true => eprintln!("the sample shop is ready"),
                false => eprintln!("the database has products already; nothing was seeded"),
            }
            Ok(())
        }
        Command::Worker => worker(config).await,
        Command::Migrate => {
            let db = Db::connect(&config).await?;
            db.migrate().await?;
            db.close().await;
            println!("migrations applied ({})", db.backend_name());
            Ok(())
        }
        Command::Admin { command: AdminCommand::Create { email, name, role } } => {
            let password = read_password()?;
            let db = Db::connect(&config).await?;
            db.migrate().await?;
            let new = NewStaff { email: &email, password: &password, name: &name, role: role.into() };
            let created = create_staff(&db, new, None).await;
            db.close().await;
            let created = created.map_err(|err| anyhow::anyhow!("{err}"))?;
            println!("created {} ({}) as {}", created.email, created.id, created.role.0.as_str());
            Ok(())
        }
        Command::Import { what: ImportCommand::Products { file, dry_run, skip_invalid } } => {
            import_products(config, &file, ImportOptions { dry_run, skip_invalid }).await
        }
        Command::Export { what: ExportCommand::Products { output } } => {
            let db = Db::connect(&config).await?;
            db.migrate().await?;
            let media = backroom::catalog::media::MediaStore::from_config(&config)?;
            let written = match &output {
                Some(path) => {
                    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
                    import::export_products(&db, &media, &mut file).await
                }
                None => import::export_products(&db, &media, &mut std::io::BufWriter::new(std::io::stdout())).await,
            };
            db.close().await;
            let rows = written.map_err(|err| anyhow::anyhow!("{err}"))?;
            eprintln!("exported {rows} variant rows");
            Ok(())
        }
        Command::Openapi | Command::Config { .. } => Ok(()),
    }
}

async fn import_products(config: Config, file: &std::path::Path, options: ImportOptions) -> anyhow::Result<()> {
    let text = std::fs::read(file).map_err(|err| anyhow::anyhow!("cannot read {}: {err}", file.display()))?;
    let state = app::build_state(config).await?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} products ({eta} left)")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let progress = |done: usize, total: usize| {
        if let Some(bar) = &bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    };
    let started = Instant::now();
    let actor = Actor { kind: "system", id: "import" };
    let report = import::import_products(&state, &text, options, actor, &progress).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    state.db.close().await;
    let report = report.map_err(|err| anyhow::anyhow!("{err}"))?;
    for error in &report.errors {
        let column = if error.column.is_empty() { String::new() } else { format!(", column {}", error.column) };
        eprintln!("row {}{column}: {}", error.row, error.reason);
    }
    let verb = if report.written {
        "imported"
    } else if options.dry_run && report.errors.is_empty() {
        "would import"
    } else {
        "nothing written"
    };
    eprintln!(
        "{verb}: {} rows, {} products: {} created, {} updated, {} unchanged, {} skipped ({:.1} s)",
        report.rows,
        report.products,
        report.created,
        report.updated,
        report.unchanged,
        report.skipped,
        started.elapsed().as_secs_f64()
    );
    if report.errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!("{} problems in {}", report.errors.len(), file.display()))
    }
}

async fn serve(mut config: Config, demo: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    if demo && !config.checkout.providers.iter().any(|p| p == "test") {
        // The demo shop is paid for with the test gateway's cards.
        config.checkout.providers.push("test".into());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", config.listen))?;
    let grace = Duration::from_secs(config.http.shutdown_grace_secs);
    let state = app::build_state(config).await?;
    if demo && demo::seed(&state, 240).await.map_err(|err| anyhow::anyhow!("{err}"))? {
        println!("Seeded a sample shop: 240 products in a category tree, with collections and stock.");
    }
    let address = listener.local_addr()?;
    tracing::info!(
        address = %address,
        database = state.db.backend_name(),
        ready_ms = started.elapsed().as_millis() as u64,
        "backroom is ready"
    );
    println!("Backroom is listening on http://{address} (API docs: http://{address}/api/docs)");
    // Fill the shelf now rather than on the first shopper's request.
    tokio::spawn({
        let state = state.clone();
        async move {
            let started = Instant::now();
            match state.shelf.read(&state.db, |contents| contents.by_id.len()).await {
                Ok(products) => {
                    tracing::info!(products, took_ms = started.elapsed().as_millis() as u64, "shelf filled")
                }
                Err(err) => tracing::warn!(error = %err, "the shelf could not be filled; the first read will retry"),
            }
        }
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = state
        .config
        .jobs
        .in_serve
        .then(|| tokio::spawn(run_workers(state.clone(), state.config.jobs.workers, stop_rx.clone())));
    let server = tokio::spawn(app::serve(listener, state.clone(), {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }
    }));
    app::shutdown_signal().await;
    let _ = stop_tx.send(true);
    let stopped = async {
        let served = server.await;
        if let Some(workers) = workers {
            workers.await?;
        }
        served
    };
    match tokio::time::timeout(grace, stopped).await {
        Ok(joined) => joined??,
        Err(_) => tracing::warn!(grace_secs = grace.as_secs(), "work still running after the grace period"),
    }
    state.db.close().await;
    Ok(())
}

async fn worker(config: Config) -> anyhow::Result<()> {
    let grace = Duration::from_secs(config.http.shutdown_grace_secs);
    let state = app::build_state(config).await?;
    let count = state.config.jobs.workers;
    tracing::info!(workers = count, database = state.db.backend_name(), "backroom workers are running");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn(run_workers(state.clone(), count, stop_rx));
    app::shutdown_signal().await;
    let _ = stop_tx.send(true);
    if tokio::time::timeout(grace, workers).await.is_err() {
        tracing::warn!(grace_secs = grace.as_secs(), "jobs still running after the grace period");
    }
    state.db.close().await;
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let password = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Password again: ")?;
        anyhow::ensure!(password == again, "the passwords differ");
        Ok(password)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}
