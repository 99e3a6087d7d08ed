//! Budgets, prepaid balances and the reserve → settle protocol.
//!
//! Every request is billed against a list of [`Scope`]s (its organisation,
//! project and key). Before any work, the caller reserves the request's worst
//! case ([`crate::worst_case`]) on *all* scopes at once: either every scope
//! admits it or none is touched, so concurrent requests can never overspend a
//! hard limit. Afterwards it settles the reservation with the actual cost
//! (which releases the hold and charges the cost, even above the hold, then
//! recorded as an overage) or releases it untouched if the request was refused.
//! Settling and releasing are idempotent: a repeated call returns the first
//! outcome and emits no events again.
//!
//! The rules live in [`BudgetState`], plain data with no locking or I/O, so a
//! persistent implementation can run the same logic inside a database
//! transaction. [`BudgetBook`] is the in-memory [`Ledger`]: a `BudgetState`
//! behind a `Mutex` that is only ever held for a few map operations (this is
//! synchronous code; no lock is held across an `.await`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::error::{BillingError, InsufficientQuota};
use crate::money::Money;
use crate::time::{Month, Timestamp};

/// Something money is counted against.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Scope {
    /// An organisation.
    Org(String),
    /// A project inside an organisation.
    Project(String),
    /// An API key.
    Key(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Org(id) => write!(f, "org:{id}"),
            Scope::Project(id) => write!(f, "project:{id}"),
            Scope::Key(id) => write!(f, "key:{id}"),
        }
    }
}

/// The hard limit of a scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "amount", rename_all = "snake_case")]
pub enum HardLimit {
    /// No hard limit (spend is still counted).
    #[default]
    Unlimited,
    /// Spend from a prepaid balance ([`BudgetState::top_up`] adds credit).
    Prepaid,
    /// At most this much per calendar month (UTC).
    MonthlyBudget(Money),
}

/// A scope's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Refuses reservations beyond it.
    pub hard: HardLimit,
    /// Notifies when crossed. For a prepaid scope it is a low-balance mark
    /// (crossed when the balance falls to it or below); otherwise a monthly
    /// spend mark (crossed when the month's spend reaches it).
    pub soft: Option<Money>,
}

/// The state of one scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The scope's limits.
    pub limits: Limits,
    /// Prepaid credit left (meaningful for [`HardLimit::Prepaid`]; may go
    /// below zero only through an overage).
    pub balance: Money,
    /// Amount charged, per month of the requests' start.
    pub spent: BTreeMap<Month, Money>,
    /// Amount held by open reservations.
    pub reserved: Money,
}

impl Account {
    /// What the scope can still admit in `month`; `None` when unlimited.
    pub fn available(&self, month: Month) -> Result<Option<Money>, BillingError> {
        let free = match self.limits.hard {
            HardLimit::Unlimited => return Ok(None),
            HardLimit::Prepaid => self.balance.checked_sub(self.reserved)?,
            HardLimit::MonthlyBudget(budget) => budget
                .checked_sub(self.spent_in(month))?
                .checked_sub(self.reserved)?,
        };
        Ok(Some(free))
    }

    /// Amount charged in `month`.
    pub fn spent_in(&self, month: Month) -> Money {
        self.spent.get(&month).copied().unwrap_or(Money::ZERO)
    }

    /// The value compared with the soft limit, and whether "crossed" means
    /// falling to it (prepaid balance) rather than reaching it (spend).
    fn soft_value(&self, month: Month) -> (Money, bool) {
        match self.limits.hard {
            HardLimit::Prepaid => (self.balance, true),
            _ => (self.spent_in(month), false),
        }
    }
}

/// Identifies a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReservationId(pub u64);

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An open hold on the scopes of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Its id.
    pub id: ReservationId,
    /// The scopes it holds money on (deduplicated).
    pub scopes: Vec<Scope>,
    /// The amount held on each scope.
    pub amount: Money,
    /// The month of the request's start; the charge is counted there.
    pub month: Month,
}

/// How a reservation was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closure {
    /// Settled with an actual cost.
    Settled,
    /// Released without charge (the request was refused or did nothing).
    Released,
}

/// The outcome of closing a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The reservation.
    pub id: ReservationId,
    /// Settled or released.
    pub closure: Closure,
    /// What had been held.
    pub reserved: Money,
    /// What was charged (zero when released).
    pub charged: Money,
    /// `charged − reserved` when positive, else zero.
    pub overage: Money,
    /// The month the charge counts in.
    pub month: Month,
}

/// Something the caller should log or send to a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BudgetEvent {
    /// A soft limit was crossed by this settlement.
    SoftLimitCrossed {
        /// The scope.
        scope: Scope,
        /// Its soft limit.
        threshold: Money,
        /// The balance (prepaid) or the month's spend after the charge.
        value: Money,
        /// The month of the charge.
        month: Month,
    },
    /// A request cost more than was reserved (the backend produced more
    /// tokens than asked); it was charged in full.
    Overage {
        /// The reservation.
        reservation: ReservationId,
        /// The scopes charged.
        scopes: Vec<Scope>,
        /// What had been held.
        reserved: Money,
        /// What was charged.
        charged: Money,
    },
}

/// The result of [`Ledger::settle`] or [`Ledger::release`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleResult {
    /// The (first) outcome.
    pub settlement: Settlement,
    /// Events caused by this call; empty on a replay.
    pub events: Vec<BudgetEvent>,
    /// True when the reservation had already been closed by an earlier call.
    pub replayed: bool,
}

/// The reserve → settle protocol, whatever stores the state.
pub trait Ledger: Send + Sync {
    /// Holds `amount` on every scope or on none; fails with
    /// [`BillingError::InsufficientQuota`] naming the first scope that cannot
    /// admit it. `at` is the request's start (it picks the budget month).
    fn reserve(
        &self,
        scopes: &[Scope],
        amount: Money,
        at: Timestamp,
    ) -> Result<ReservationId, BillingError>;

    /// Releases the hold and charges `actual` (recording any overage).
    fn settle(&self, id: ReservationId, actual: Money) -> Result<SettleResult, BillingError>;

    /// Releases the hold without charge.
    fn release(&self, id: ReservationId) -> Result<SettleResult, BillingError>;
}

/// All accounts and reservations, with the rules; no locking, no I/O.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetState {
    accounts: HashMap<Scope, Account>,
    open: HashMap<ReservationId, Reservation>,
    closed: HashMap<ReservationId, Settlement>,
    next_id: u64,
}

impl BudgetState {
    /// No accounts, no reservations.
    pub fn new() -> BudgetState {
        BudgetState::default()
    }

    /// Sets a scope's limits (creating its account); takes effect at once.
    pub fn set_limits(&mut self, scope: Scope, limits: Limits) {
        self.accounts.entry(scope).or_default().limits = limits;
    }

    /// Adds prepaid credit to a scope (creating its account).
    pub fn top_up(&mut self, scope: Scope, amount: Money) -> Result<Money, BillingError> {
        non_negative("a top-up", amount)?;
        let account = self.accounts.entry(scope).or_default();
        account.balance = account.balance.checked_add(amount)?;
        Ok(account.balance)
    }

    /// Rebuilds a state from persisted parts (e.g. after a restart): the
    /// accounts (whose `reserved` must include the open reservations), the
    /// open reservations, the closed ones still kept for idempotence, and the
    /// next id to issue (greater than every id given).
    pub fn from_parts(
        accounts: impl IntoIterator<Item = (Scope, Account)>,
        open: impl IntoIterator<Item = Reservation>,
        closed: impl IntoIterator<Item = Settlement>,
        next_id: u64,
    ) -> BudgetState {
        BudgetState {
            accounts: accounts.into_iter().collect(),
            open: open.into_iter().map(|r| (r.id, r)).collect(),
            closed: closed.into_iter().map(|s| (s.id, s)).collect(),
            next_id,
        }
    }

    /// Every account, in no particular order.
    pub fn accounts(&self) -> impl Iterator<Item = (&Scope, &Account)> {
        self.accounts.iter()
    }

    /// The outcome of a closed reservation still remembered.
    pub fn settlement(&self, id: ReservationId) -> Option<&Settlement> {
        self.closed.get(&id)
    }

    /// A scope's account, if it has one.
    pub fn account(&self, scope: &Scope) -> Option<&Account> {
        self.accounts.get(scope)
    }

    /// An open reservation.
    pub fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.open.get(&id)
    }

    /// All open reservations (for recovery after a crash).
    pub fn open_reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.open.values()
    }

    /// See [`Ledger::reserve`].
    pub fn reserve(
        &mut self,
        scopes: &[Scope],
        amount: Money,
        at: Timestamp,
    ) -> Result<ReservationId, BillingError> {
        non_negative("a reservation", amount)?;
        let month = Month::containing(at);
        let mut unique: Vec<Scope> = Vec::with_capacity(scopes.len());
        for scope in scopes {
            if !unique.contains(scope) {
                unique.push(scope.clone());
            }
        }
        // Check everything (including overflow) before touching anything.
        let mut new_reserved = Vec::with_capacity(unique.len());
        for scope in &unique {
            let account = self.accounts.get(scope);
            let available = match account {
                Some(a) => a.available(month)?,
                None => None,
            };
            if let Some(available) = available {
                if amount > available {
                    return Err(BillingError::InsufficientQuota(InsufficientQuota {
                        scope: scope.clone(),
                        requested: amount,
                        available: available.max_zero(),
                    }));
                }
            }
            let held = account.map_or(Money::ZERO, |a| a.reserved);
            new_reserved.push(held.checked_add(amount)?);
        }
        let id = ReservationId(self.next_id);
        self.next_id = self.next_id.checked_add(1).ok_or(BillingError::Overflow {
            op: "reservation id",
        })?;
        for (scope, reserved) in unique.iter().zip(new_reserved) {
            self.accounts.entry(scope.clone()).or_default().reserved = reserved;
        }
        self.open.insert(
            id,
            Reservation {
                id,
                scopes: unique,
                amount,
                month,
            },
        );
        Ok(id)
    }

    /// See [`Ledger::settle`].
    pub fn settle(
        &mut self,
        id: ReservationId,
        actual: Money,
    ) -> Result<SettleResult, BillingError> {
        non_negative("an actual cost", actual)?;
        self.close(id, Closure::Settled, actual)
    }

    /// See [`Ledger::release`].
    pub fn release(&mut self, id: ReservationId) -> Result<SettleResult, BillingError> {
        self.close(id, Closure::Released, Money::ZERO)
    }

    /// Forgets closed reservations of months before `month`, after which
    /// settling them again reports [`BillingError::UnknownReservation`].
    pub fn forget_closed_before(&mut self, month: Month) {
        self.closed.retain(|_, s| s.month >= month);
    }

    fn close(
        &mut self,
        id: ReservationId,
        closure: Closure,
        charged: Money,
    ) -> Result<SettleResult, BillingError> {
        if let Some(settlement) = self.closed.get(&id) {
            return Ok(SettleResult {
                settlement: *settlement,
                events: Vec::new(),
                replayed: true,
            });
        }
        let reservation = self
            .open
            .get(&id)
            .ok_or(BillingError::UnknownReservation { id: id.0 })?;
        let month = reservation.month;
        // Compute every new account first so an overflow changes nothing.
        let mut updated = Vec::with_capacity(reservation.scopes.len());
        let mut events = Vec::new();
        for scope in &reservation.scopes {
            let mut account = self.accounts.get(scope).cloned().unwrap_or_default();
            let (before, falling) = account.soft_value(month);
            account.reserved = account.reserved.checked_sub(reservation.amount)?;
            if closure == Closure::Settled {
                let spent = account.spent_in(month).checked_add(charged)?;
                account.spent.insert(month, spent);
                if account.limits.hard == HardLimit::Prepaid {
                    account.balance = account.balance.checked_sub(charged)?;
                }
            }
            let (after, _) = account.soft_value(month);
            if let Some(threshold) = account.limits.soft {
                let crossed = if falling {
                    before > threshold && after <= threshold
                } else {
                    before < threshold && after >= threshold
                };
                if crossed {
                    events.push(BudgetEvent::SoftLimitCrossed {
                        scope: scope.clone(),
                        threshold,
                        value: after,
                        month,
                    });
                }
            }
            updated.push((scope.clone(), account));
        }
        let overage = charged.checked_sub(reservation.amount)?.max_zero();
        if overage > Money::ZERO {
            events.push(BudgetEvent::Overage {
                reservation: id,
                scopes: reservation.scopes.clone(),
                reserved: reservation.amount,
                charged,
            });
        }
        let settlement = Settlement {
            id,
            closure,
            reserved: reservation.amount,
            charged,
            overage,
            month,
        };
        for (scope, account) in updated {
            self.accounts.insert(scope, account);
        }
        self.open.remove(&id);
        self.closed.insert(id, settlement);
        Ok(SettleResult {
            settlement,
            events,
            replayed: false,
        })
    }
}

fn non_negative(what: &'static str, amount: Money) -> Result<(), BillingError> {
    if amount.is_negative() {
        Err(BillingError::NegativeAmount { what, amount })
    } else {
        Ok(())
    }
}

/// The in-memory, thread-safe [`Ledger`].
#[derive(Debug, Default)]
pub struct BudgetBook {
    state: Mutex<BudgetState>,
}

impl BudgetBook {
    /// An empty book.
    pub fn new() -> BudgetBook {
        BudgetBook::default()
    }

    /// A book over existing state (e.g. loaded at start-up).
    pub fn from_state(state: BudgetState) -> BudgetBook {
        BudgetBook {
            state: Mutex::new(state),
        }
    }

    /// Runs `f` with the state locked. Every mutation of `BudgetState`
    /// validates before it writes, so a panic elsewhere cannot leave it
    /// half-updated: a poisoned lock is safe to recover.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut BudgetState) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// See [`BudgetState::set_limits`].
    pub fn set_limits(&self, scope: Scope, limits: Limits) {
        self.with_state(|s| s.set_limits(scope, limits));
    }

    /// See [`BudgetState::top_up`].
    pub fn top_up(&self, scope: Scope, amount: Money) -> Result<Money, BillingError> {
        self.with_state(|s| s.top_up(scope, amount))
    }

    /// A copy of a scope's account.
    pub fn account(&self, scope: &Scope) -> Option<Account> {
        self.with_state(|s| s.account(scope).cloned())
    }

    /// A copy of the whole state (for persistence or inspection).
    pub fn snapshot(&self) -> BudgetState {
        self.with_state(|s| s.clone())
    }
}

impl Ledger for BudgetBook {
    fn reserve(
        &self,
        scopes: &[Scope],
        amount: Money,
        at: Timestamp,
    ) -> Result<ReservationId, BillingError> {
        self.with_state(|s| s.reserve(scopes, amount, at))
    }

    fn settle(&self, id: ReservationId, actual: Money) -> Result<SettleResult, BillingError> {
        self.with_state(|s| s.settle(id, actual))
    }

    fn release(&self, id: ReservationId) -> Result<SettleResult, BillingError> {
        self.with_state(|s| s.release(id))
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
