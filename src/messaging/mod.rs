//! Messages that must not be lost: the durable job queue and the jobs it runs: email and
//! webhooks.

pub mod admin;
pub mod cron;
pub mod forms;
pub mod jobs;
pub mod newsletter;
pub mod scheduler;
pub mod templates;
pub mod webhooks;
pub mod webhooks_admin;

use crate::app::AppState;
use crate::platform::batch::Batch;
use crate::platform::db::Tx;
use crate::platform::error::AppResult;
use crate::platform::mail::Email;
use jobs::{ClaimedJob, JobError, NewJob};

/// Sends one email through the configured transport.
pub const SEND_EMAIL: &str = "email.send";
/// Sends an account email whose link's token is made when it runs.
pub const ACCOUNT_EMAIL: &str = "account.email";
/// Does nothing; measures the queue itself.
pub const NOOP: &str = "noop";
/// Deletes what has ended long ago: sessions, mailed tokens, finished jobs.
pub const CLEANUP: &str = "maintenance.cleanup";

/// Gives back the stock of reservations that were not committed in time.
pub const EXPIRE_RESERVATIONS: &str = "inventory.expire_reservations";

/// The kinds of job this build can run.
pub const KINDS: [&str; 7] =
    [SEND_EMAIL, ACCOUNT_EMAIL, NOOP, CLEANUP, EXPIRE_RESERVATIONS, webhooks::DELIVER, newsletter::CONFIRM_EMAIL];

/// The static name of a job kind, if it is one this build runs.
pub fn known_kind(kind: &str) -> Option<&'static str> {
    KINDS.into_iter().find(|known| *known == kind)
}

/// Enqueues `email` in the caller's transaction: it is sent once the change that caused it
/// commits, and retried until the mail server takes it.
pub async fn send_email(tx: &mut Tx, email: &Email) -> AppResult<()> {
    jobs::enqueue(tx, email_job(email)?).await?;
    Ok(())
}

/// As [`send_email`], with the job's `INSERT` added to `batch` for the caller to run in `tx`.
pub fn send_email_in(tx: &mut Tx, batch: &mut Batch, email: &Email) -> AppResult<()> {
    jobs::enqueue_in(tx, batch, email_job(email)?);
    Ok(())
}

fn email_job(email: &Email) -> AppResult<NewJob> {
    Ok(NewJob::new(SEND_EMAIL, email)?.max_attempts(12))
}

/// Sends `email` as the job `id`, and records the delivery for staff.
async fn deliver(state: &AppState, id: &str, email: Email) -> Result<(), JobError> {
    let (to, subject) = (email.to.clone(), email.subject.clone());
    let message_id = state.mailer.send(email, id).await.map_err(JobError::retry)?;
    // Sent is sent: a failure to log it must not send the email again.
    if let Err(err) = admin::record_delivery(state, id, &to, &subject, &message_id).await {
        tracing::error!(error = %err, mail.message_id = %message_id, "an email was sent but not logged");
    }
    Ok(())
}

/// Runs the job of `kind`.
pub(crate) async fn run_job(state: &AppState, job: &ClaimedJob) -> Result<(), JobError> {
    let (id, payload) = (job.id.as_str(), job.payload.as_str());
    match job.kind.as_str() {
        SEND_EMAIL => {
            let email: Email = serde_json::from_str(payload).map_err(|err| JobError::Permanent(err.to_string()))?;
            deliver(state, id, email).await
        }
        ACCOUNT_EMAIL => {
            let job = serde_json::from_str(payload).map_err(|err| JobError::Permanent(err.to_string()))?;
            let email = crate::accounts::customers::account_email(state, job).await?;
            match email {
                Some(email) => deliver(state, id, email).await,
                None => Ok(()),
            }
        }
        webhooks::DELIVER => webhooks::run(state, job).await,
        newsletter::CONFIRM_EMAIL => newsletter::confirmation_email(state, id, payload).await,
        crate::catalog::imports_admin::RUN_IMPORT => crate::catalog::imports_admin::run(state, job).await,
        NOOP => Ok(()),
        EXPIRE_RESERVATIONS => {
            let expired = crate::catalog::inventory::expire_due(state).await.map_err(JobError::retry)?;
            if expired > 0 {
                tracing::info!(reservations = expired, "expired stock reservations");
            }
            Ok(())
        }
        CLEANUP => {
            let accounts = crate::accounts::auth::purge_ended(state).await.map_err(JobError::retry)?;
            let jobs = jobs::purge_finished(state).await.map_err(JobError::retry)?;
            let signups = newsletter::purge_unconfirmed(state).await.map_err(JobError::retry)?;
            let attempts = crate::checkout::place::release_stale(state).await.map_err(JobError::retry)?;
            let refunds = crate::orders::aftercare::finish_pending_refunds(state).await.map_err(JobError::retry)?;
            let carts = crate::checkout::cart::purge_expired(state).await.map_err(JobError::retry)?;
            tracing::info!(
                deleted.accounts = accounts,
                deleted.jobs = jobs,
                deleted.signups = signups,
                deleted.carts = carts,
                released.checkout_attempts = attempts,
                finished.refunds = refunds,
                "cleaned up"
            );
            Ok(())
        }
        unknown => Err(JobError::Permanent(format!("no handler for jobs of kind `{unknown}`"))),
    }
}
