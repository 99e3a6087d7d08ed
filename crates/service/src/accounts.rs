//! Signing up and signing in to the web app, with no HTTP: who may sign up
//! ([`Signup`]: `approval`, the default, `open` or `closed`), sign-ups
//! waiting for an owner's or admin's approval, and sign-in throttling per
//! account and per client address ([`ThrottlePolicy`]), with the audit
//! entries they leave. The web app's routes call [`Accounts`].
//!
//! **Sign-up.** The first person becomes the organisation's owner at once,
//! whatever the policy. After that, `open` makes each new person a member,
//! `closed` refuses them (403), and `approval` creates their account with a
//! request to join ([`SignedUp::Pending`]): no membership and so no session
//! until an owner or admin approves it (`members::approve`); signing in
//! with the right password meanwhile is a 403 saying so.
//!
//! **Throttling.** Every sign-in attempt is counted against two keys, the
//! account (`account:<email>`, known or not, so a 429 tells nothing about
//! which emails exist) and the client's address (`address:<ip>`; an IPv6
//! address counts as its /64, which one host usually holds whole; no
//! address, as in tests without a peer, means no per-address count). An
//! attempt counts as a failure *before* the password is checked and is
//! taken back when it proves right, so concurrent guesses cannot all slip
//! in before the first failure is written. When a key's failures within
//! [`ThrottlePolicy::window`] reach its limit (5 per account, 20 per
//! address by default) it is locked for [`ThrottlePolicy::first_lockout`];
//! while locked every attempt is a 429 `rate_limit_exceeded` with
//! `retry-after`, without checking the password; each failure after a lock
//! ends locks the key again for twice as long, up to
//! [`ThrottlePolicy::max_lockout`]. A key quiet for a whole window after
//! its last failure or lock starts afresh, and a right password clears the
//! account's failures (not the address's, or an attacker could reset their
//! address by signing in to an account of their own). Each failure is
//! audited (`sign_in.failed`) and so is each lock (`sign_in.locked_out`),
//! in the organisation signed in to; attempts refused while locked are not
//! (they would let an attacker fill the log).
//!
//! The state lives in the store, not in memory: several instances may
//! share one PostgreSQL database behind a load balancer, and a throttle
//! each kept to itself would give an attacker one allowance per instance
//! (and forget everything on a restart). The store makes each update of a
//! key atomic; the rules are here. Time comes from a [`Clock`], which tests
//! advance by hand.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api::ApiError;
use serde_json::json;
use store::{NewAuditEntry, Role, Store, StoreError, Throttle, User};

use crate::Result;

/// The shortest password accepted at sign-up.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest email accepted (and the longest throttle key made of one).
pub const MAX_EMAIL_CHARS: usize = 320;

/// Who may sign up after the first person (the owner).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Signup {
    /// Anyone may sign up; an owner or admin approves them before they can
    /// sign in.
    #[default]
    Approval,
    /// Anyone who can reach the server may sign up and chat at once.
    Open,
    /// Nobody but the first person; an owner adds people.
    Closed,
}

impl Signup {
    /// The setting's name: `approval`, `open` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Signup::Approval => "approval",
            Signup::Open => "open",
            Signup::Closed => "closed",
        }
    }
}

impl FromStr for Signup {
    type Err = String;

    /// `approval`, `open` or `closed`, in any case; empty is the default.
    fn from_str(text: &str) -> std::result::Result<Signup, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "approval" => Ok(Signup::Approval),
            "open" => Ok(Signup::Open),
            "closed" => Ok(Signup::Closed),
            other => Err(format!(
                "sign-up must be approval, open or closed, not {other:?}"
            )),
        }
    }
}

/// How sign-in failures are throttled (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures per account within the window before it is locked.
    pub account_failures: u32,
    /// Failures per client address within the window before it is locked
    /// (higher: several people may share an address).
    pub address_failures: u32,
    /// How long failures are remembered: a key quiet this long after its
    /// last failure or lock starts afresh.
    pub window: Duration,
    /// The first lock; each later one doubles it.
    pub first_lockout: Duration,
    /// The longest lock.
    pub max_lockout: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            account_failures: 5,
            address_failures: 20,
            window: Duration::from_secs(15 * 60),
            first_lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(15 * 60),
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl ThrottlePolicy {
    /// How long the lock after `lockouts` earlier ones lasts, in ms.
    pub fn lockout_ms(&self, lockouts: i64) -> i64 {
        let shift = u32::try_from(lockouts.clamp(0, 32)).unwrap_or(32);
        millis(self.first_lockout)
            .saturating_mul(1_i64 << shift)
            .min(millis(self.max_lockout))
    }

    /// One attempt on a key with this `row` at `now`, counting against
    /// `limit`: refused while the key is locked (the milliseconds left),
    /// else the row with the attempt counted as a failure — locked when the
    /// failures reach the limit.
    pub fn attempt(
        &self,
        row: &Throttle,
        limit: u32,
        now: i64,
    ) -> std::result::Result<Throttle, i64> {
        if row.locked_until > now {
            return Err(row.locked_until - now);
        }
        let mut next = if now >= row.expires_at {
            Throttle::default()
        } else {
            *row
        };
        next.failures += 1;
        next.last_failure_at = now;
        if next.failures >= i64::from(limit) {
            next.locked_until = now.saturating_add(self.lockout_ms(next.lockouts));
            next.lockouts += 1;
        }
        next.expires_at = next
            .last_failure_at
            .max(next.locked_until)
            .saturating_add(millis(self.window));
        Ok(next)
    }

    /// Takes back an attempt that proved right from a key's `row`: one
    /// failure fewer, and the lock the attempt set (`taken` is the row it
    /// wrote, `locked` whether it set a lock) lifted if nothing changed it
    /// since.
    pub fn give_back(&self, row: &Throttle, taken: &Throttle, locked: bool) -> Throttle {
        let mut next = *row;
        next.failures = (next.failures - 1).max(0);
        if locked && row.locked_until == taken.locked_until && row.lockouts == taken.lockouts {
            next.locked_until = 0;
            next.lockouts = (next.lockouts - 1).max(0);
        }
        if next.failures == 0 && next.lockouts == 0 {
            return Throttle::default();
        }
        next
    }
}

/// The time sign-in throttling reads: the system's, or a hand-driven one
/// for tests.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock standing at `start_ms` until [`Clock::advance`]d; clones
    /// share it.
    pub fn manual(start_ms: i64) -> Self {
        Clock(Some(Arc::new(AtomicI64::new(start_ms))))
    }

    /// Now, in unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Some(at) => at.load(Ordering::SeqCst),
            None => store::now_ms(),
        }
    }

    /// Moves a manual clock on by `by` (the system clock moves by itself).
    pub fn advance(&self, by: Duration) {
        if let Some(at) = &self.0 {
            at.fetch_add(millis(by), Ordering::SeqCst);
        }
    }
}

/// Someone signing up.
#[derive(Debug, Clone, Copy)]
pub struct NewPerson<'a> {
    /// Their email (any case).
    pub email: &'a str,
    /// Their display name; empty: the email's local part.
    pub name: &'a str,
    /// At least [`MIN_PASSWORD_CHARS`] characters.
    pub password: &'a str,
}

/// What a sign-up came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedUp {
    /// A member of the organisation with `role`, who may sign in now.
    Member {
        /// The new person.
        user: User,
        /// `owner` for the first person, else `member`.
        role: Role,
    },
    /// Waiting for an owner or admin to approve them.
    Pending {
        /// The new person.
        user: User,
    },
}

/// The web app's accounts: the sign-up policy, the throttling policy and
/// the clock. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    signup: Signup,
    throttle: ThrottlePolicy,
    clock: Clock,
}

/// One attempt counted against one key, to take back if it proves right.
struct Ticket {
    key: String,
    written: Throttle,
    locked: bool,
}

impl Accounts {
    /// Accounts with this sign-up policy, the default throttling and the
    /// system clock.
    pub fn new(signup: Signup) -> Self {
        Accounts {
            signup,
            ..Accounts::default()
        }
    }

    /// Sets who may sign up.
    pub fn with_signup(mut self, signup: Signup) -> Self {
        self.signup = signup;
        self
    }

    /// Sets the throttling policy.
    pub fn with_throttle(mut self, policy: ThrottlePolicy) -> Self {
        self.throttle = policy;
        self
    }

    /// Sets the clock throttling reads.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Who may sign up.
    pub fn signup(&self) -> Signup {
        self.signup
    }

    /// The throttling policy.
    pub fn throttle(&self) -> &ThrottlePolicy {
        &self.throttle
    }

    /// Signs `person` up to `org_id` (see the module documentation): the
    /// first person is its owner; later ones as the policy says.
    pub async fn sign_up(
        &self,
        store: &Store,
        org_id: &str,
        person: NewPerson<'_>,
    ) -> Result<SignedUp> {
        let name = checked_name(&person)?;
        let first = store.list_members(org_id).await?.is_empty();
        if !first && self.signup == Signup::Closed {
            return Err(ApiError::Forbidden {
                message: "Sign-up is closed on this server: ask an owner of the organization \
                          to add you."
                    .into(),
            }
            .into());
        }
        let taken = |err: StoreError| match err.kind() {
            store::ErrorKind::Conflict => invalid(
                "This email is already registered: sign in instead.".into(),
                "email",
            ),
            _ => err.into(),
        };
        if !first && self.signup == Signup::Approval {
            let user = store
                .create_pending_user(org_id, person.email, &name, person.password)
                .await
                .map_err(taken)?;
            return Ok(SignedUp::Pending { user });
        }
        let user = store
            .create_user(person.email, &name, person.password)
            .await
            .map_err(taken)?;
        let role = if first { Role::Owner } else { Role::Member };
        store.set_role(org_id, &user.id, role).await?;
        Ok(SignedUp::Member { user, role })
    }

    /// Signs in to `org_id` with `email` and `password` from `address` (the
    /// client's, when known), throttled as the module documentation says:
    /// the person and their role, or a 429 while locked out, a 401 for a
    /// wrong email or password (the same for both) or someone who is not a
    /// member, and a 403 while their sign-up waits for approval.
    pub async fn sign_in(
        &self,
        store: &Store,
        org_id: &str,
        email: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<(User, Role)> {
        self.sign_in_inner(store, org_id, email, password, address, None)
            .await
    }

    /// [`Accounts::sign_in`] through an invite link: `token`'s invite names
    /// the organisation, and a person with an account who is not yet its
    /// member (a member elsewhere, removed earlier, or still waiting for
    /// approval) joins it with the invited role once the password is right
    /// ([`crate::invites::accept_existing`]). Throttled and audited like
    /// any sign-in; an unknown, used or expired link is a 400 naming
    /// `invite`. Answers the organisation too.
    pub async fn sign_in_with_invite(
        &self,
        store: &Store,
        token: &str,
        email: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<(User, Role, String)> {
        let invite = store.find_invite(token).await.map_err(|err| match err {
            store::StoreError::NotFound(_) => crate::Error::from(ApiError::InvalidRequest {
                message: "This invite link is unknown, used or expired: ask for a new one.".into(),
                param: Some("invite".into()),
                code: None,
            }),
            err => err.into(),
        })?;
        let (user, role) = self
            .sign_in_inner(store, &invite.org_id, email, password, address, Some(token))
            .await?;
        Ok((user, role, invite.org_id))
    }

    async fn sign_in_inner(
        &self,
        store: &Store,
        org_id: &str,
        email: &str,
        password: &str,
        address: Option<IpAddr>,
        invite: Option<&str>,
    ) -> Result<(User, Role)> {
        let now = self.clock.now_ms();
        let email: String = email
            .trim()
            .to_lowercase()
            .chars()
            .take(MAX_EMAIL_CHARS)
            .collect();
        let account_key = format!("account:{email}");
        let address = address.map(address_bucket);
        let policy = &self.throttle;
        let account = self
            .take(store, &account_key, policy.account_failures, now, "account")
            .await?;
        let client = match &address {
            None => None,
            Some(address) => {
                let key = format!("address:{address}");
                match self
                    .take(store, &key, policy.address_failures, now, "address")
                    .await
                {
                    Ok(ticket) => Some(ticket),
                    Err(err) => {
                        self.give_back(store, &account).await?;
                        return Err(err);
                    }
                }
            }
        };

        let user = match store.verify_password(&email, password).await {
            Ok(user) => Some(user),
            Err(err) if err.kind() == store::ErrorKind::Unauthorized => None,
            Err(err) => return Err(err.into()),
        };
        if let Some(user) = &user {
            let right: Option<Result<(User, Role)>> = match store.get_role(org_id, &user.id).await {
                Ok(role) => Some(Ok((user.clone(), role))),
                Err(err) if err.kind() == store::ErrorKind::NotFound => {
                    if let Some(token) = invite {
                        Some(
                            crate::invites::accept_existing(store, token, &user.id)
                                .await
                                .map(|(invite, user)| (user, invite.role)),
                        )
                    } else if store.signup_pending(org_id, &user.id).await? {
                        Some(Err(ApiError::Forbidden {
                            message: "Your account is waiting for approval: an owner or admin \
                                      of the organization must approve it before you can sign \
                                      in."
                            .into(),
                        }
                        .into()))
                    } else {
                        None
                    }
                }
                Err(err) => return Err(err.into()),
            };
            if let Some(right) = right {
                // The password was right: the account starts afresh and
                // the address gets its attempt back.
                store.clear_throttle(&account_key).await?;
                if let Some(ticket) = &client {
                    self.give_back(store, ticket).await?;
                }
                return right;
            }
        }

        // A failure: audit it and any lock it set.
        let actor = match &address {
            Some(address) => format!("address:{address}"),
            None => "address:unknown".to_owned(),
        };
        store
            .append_audit(&NewAuditEntry {
                org_id: org_id.to_owned(),
                actor: actor.clone(),
                action: "sign_in.failed".into(),
                target: email.clone(),
                before: None,
                after: Some(json!({
                    "email": email,
                    "user_id": user.as_ref().map(|u| u.id.clone()),
                    "address": address,
                    "failures": account.written.failures,
                    "address_failures": client.as_ref().map(|t| t.written.failures),
                })),
            })
            .await?;
        for ticket in std::iter::once(&account).chain(client.as_ref()) {
            if ticket.locked {
                let lock_ms = ticket.written.locked_until - now;
                store
                    .append_audit(&NewAuditEntry {
                        org_id: org_id.to_owned(),
                        actor: actor.clone(),
                        action: "sign_in.locked_out".into(),
                        target: ticket.key.clone(),
                        before: None,
                        after: Some(json!({
                            "failures": ticket.written.failures,
                            "lockouts": ticket.written.lockouts,
                            "locked_until_ms": ticket.written.locked_until,
                            "lock_seconds": lock_ms.div_euclid(1000),
                        })),
                    })
                    .await?;
            }
        }
        store.forget_throttles(now).await?;
        Err(ApiError::Unauthorized {
            message: "Wrong email or password.".into(),
        }
        .into())
    }

    /// Counts one attempt against `key` (see [`ThrottlePolicy::attempt`]),
    /// or refuses with a 429 while it is locked.
    async fn take(
        &self,
        store: &Store,
        key: &str,
        limit: u32,
        now: i64,
        what: &str,
    ) -> Result<Ticket> {
        let mut refused = None;
        let (_, written) = store
            .update_throttle(key, |row| match self.throttle.attempt(row, limit, now) {
                Ok(next) => Some(next),
                Err(left_ms) => {
                    refused = Some(left_ms);
                    None
                }
            })
            .await?;
        match (refused, written) {
            (None, Some(written)) => Ok(Ticket {
                key: key.to_owned(),
                written,
                locked: written.locked_until > now,
            }),
            (left_ms, _) => {
                let secs = u64::try_from(left_ms.unwrap_or(1_000).max(1))
                    .unwrap_or(1)
                    .div_ceil(1000);
                let whose = if what == "account" {
                    "for this account"
                } else {
                    "from your address"
                };
                Err(ApiError::RateLimited {
                    message: format!(
                        "Too many failed sign-in attempts {whose}: try again in {}.",
                        wait_words(secs)
                    ),
                    retry_after_secs: Some(secs),
                }
                .into())
            }
        }
    }

    /// Takes back an attempt that proved right, or was not checked.
    async fn give_back(&self, store: &Store, ticket: &Ticket) -> Result<()> {
        store
            .update_throttle(&ticket.key, |row| {
                Some(self.throttle.give_back(row, &ticket.written, ticket.locked))
            })
            .await?;
        Ok(())
    }
}

/// What throttling counts an address as: an IPv4 address (an IPv4-mapped
/// IPv6 one too) as itself, an IPv6 address as its /64.
pub fn address_bucket(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// A wait in words: seconds up to 90, minutes above.
fn wait_words(secs: u64) -> String {
    if secs <= 90 {
        format!("{secs} second{}", if secs == 1 { "" } else { "s" })
    } else {
        format!("{} minutes", secs.div_ceil(60))
    }
}

/// Checks a sign-up's password and email; hands back the display name
/// (the email's local part when none was given).
pub(crate) fn checked_name(person: &NewPerson<'_>) -> Result<String> {
    if person.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(invalid(
            format!("The password must have at least {MIN_PASSWORD_CHARS} characters."),
            "password",
        ));
    }
    if !person.email.contains('@') {
        return Err(invalid("The email must contain '@'.".into(), "email"));
    }
    if person.email.trim().chars().count() > MAX_EMAIL_CHARS {
        return Err(invalid(
            format!("The email must have at most {MAX_EMAIL_CHARS} characters."),
            "email",
        ));
    }
    Ok(match person.name.trim() {
        "" => person
            .email
            .trim()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned(),
        name => name.to_owned(),
    })
}

fn invalid(message: String, param: &str) -> crate::Error {
    ApiError::InvalidRequest {
        message,
        param: Some(param.to_owned()),
        code: None,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn the_policy_has_three_names_and_defaults_to_approval() {
        assert_eq!(Signup::default(), Signup::Approval);
        assert_eq!("".parse(), Ok(Signup::Approval));
        assert_eq!(" Approval ".parse(), Ok(Signup::Approval));
        assert_eq!("OPEN".parse(), Ok(Signup::Open));
        assert_eq!("closed".parse(), Ok(Signup::Closed));
        assert!("yes".parse::<Signup>().is_err());
        for policy in [Signup::Approval, Signup::Open, Signup::Closed] {
            assert_eq!(policy.as_str().parse(), Ok(policy));
        }
    }

    /// Fails `n` times at `now` from `row`, as the service would.
    fn fail(policy: &ThrottlePolicy, mut row: Throttle, n: u32, now: i64) -> Throttle {
        for _ in 0..n {
            row = policy.attempt(&row, 5, now).expect("not locked");
        }
        row
    }

    #[test]
    fn a_key_locks_at_its_limit_and_backs_off_exponentially_to_the_cap() {
        let policy = ThrottlePolicy::default();
        let mut now = 1_000_000;
        let row = fail(&policy, Throttle::default(), 4, now);
        assert_eq!((row.failures, row.locked_until), (4, 0));
        let mut row = fail(&policy, row, 1, now);
        assert_eq!(row.locked_until, now + MIN, "the fifth failure locks");
        assert_eq!(policy.attempt(&row, 5, now + 1_000), Err(MIN - 1_000));
        // Each failure after a lock locks again, twice as long, up to 15 min.
        for expected in [2, 4, 8, 15, 15] {
            now = row.locked_until;
            row = fail(&policy, row, 1, now);
            assert_eq!(row.locked_until - now, expected * MIN);
            assert_eq!(
                policy.attempt(&row, 5, row.locked_until - 1),
                Err(1),
                "locked"
            );
        }
        assert_eq!(policy.lockout_ms(1_000), 15 * MIN, "no overflow");
    }

    #[test]
    fn a_quiet_window_forgives_and_a_right_password_is_taken_back() {
        let policy = ThrottlePolicy::default();
        let now = 1_000_000;
        let row = fail(&policy, Throttle::default(), 5, now);
        // Quiet for a window after the lock ends: a fresh start.
        let later = row.locked_until + 15 * MIN;
        let fresh = fail(&policy, row, 1, later);
        assert_eq!(
            (fresh.failures, fresh.lockouts, fresh.locked_until),
            (1, 0, 0)
        );
        // Not quite: the next failure locks for twice as long.
        let soon = fail(&policy, row, 1, later - 1);
        assert_eq!(soon.locked_until - (later - 1), 2 * MIN);

        // An attempt that locked, then proved right, lifts its lock.
        let four = fail(&policy, Throttle::default(), 4, now);
        let taken = policy.attempt(&four, 5, now).unwrap();
        assert!(taken.locked_until > now);
        let back = policy.give_back(&taken, &taken, true);
        assert_eq!((back.failures, back.locked_until, back.lockouts), (4, 0, 0));
        // One that did not lock just gives its failure back.
        let one = policy.attempt(&Throttle::default(), 5, now).unwrap();
        assert_eq!(policy.give_back(&one, &one, false), Throttle::default());
    }

    #[test]
    fn addresses_are_counted_by_host_or_ipv6_slash_64() {
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(address_bucket(v4), "203.0.113.7");
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(address_bucket(mapped), "203.0.113.7");
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(address_bucket(a), "2001:db8:1:2::/64");
        assert_eq!(address_bucket(a), address_bucket(b));
    }

    #[test]
    fn waits_are_worded_in_seconds_then_minutes() {
        assert_eq!(wait_words(1), "1 second");
        assert_eq!(wait_words(60), "60 seconds");
        assert_eq!(wait_words(120), "2 minutes");
        assert_eq!(wait_words(900), "15 minutes");
    }
}
