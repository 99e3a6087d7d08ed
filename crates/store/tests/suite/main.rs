//! The store suite: every case runs against SQLite (a temp file) and, when
//! `PARLANCE_TEST_POSTGRES_URL` is set, against a fresh PostgreSQL database.

mod accounts;
mod batch;
mod budgets;
mod checkpoint;
mod conversations;
mod fold;
mod front_door;
mod incidents;
mod instances;
mod keys;
mod ledger;
mod responses;
mod stored_completions;
mod support;
mod tenancy;
mod usage;

/// Declares each case twice: `sqlite::<case>` and `postgres::<case>`.
macro_rules! suite {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::support::on_sqlite(|db| crate::$module::$case(db)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::support::on_postgres(|db| crate::$module::$case(db)).await;
                }
            )*
        }
    };
}

suite! {
    batch::batched_settlements_bill_each_request_once_under_concurrency,
    batch::a_failed_write_in_a_batch_rolls_back_alone,
    batch::a_settlement_lost_before_its_batch_committed_is_recovered_by_the_sweep,
    batch::batched_reservations_never_pass_a_hard_limit_under_concurrency,
    batch::one_batch_reports_soft_limits_keeps_progress_and_refuses_used_ids,
    batch::progress_batched_with_its_settlement_is_answered_without_a_write,
    incidents::incidents_open_once_close_and_give_downtime,
    instances::only_an_expired_or_missing_owner_orphans_a_reservation,
    instances::only_an_expired_owner_orphans_a_pending_background_response,
    instances::open_reservations_survive_the_one_btree_migration,
    tenancy::migrations_are_idempotent,
    tenancy::users_roles_and_passwords,
    tenancy::projects_are_isolated_by_org,
    tenancy::audit_log_is_append_only_and_per_org,
    tenancy::orgs_and_projects_are_found_by_name,
    tenancy::concurrent_first_starts_create_one_org_and_project,
    keys::key_create_lookup_revoke_and_masking,
    keys::key_rotation_replaces_the_secret,
    keys::key_expiry_and_allowed_models,
    keys::keys_are_isolated_by_org,
    keys::keys_are_found_and_counted_across_orgs,
    ledger::ledger_retry_returns_the_existing_row,
    ledger::ledger_concurrent_inserts_of_one_request_id_write_one_row,
    ledger::ledger_rows_are_immutable,
    ledger::settle_writes_the_row_and_drops_the_reservation_together,
    ledger::settle_rolls_back_when_the_delete_fails,
    ledger::recover_lists_leftover_reservations,
    ledger::usage_rows_are_isolated_by_org,
    ledger::request_ids_are_unique_per_org,
    usage::usage_buckets_and_group_by_sum_right,
    usage::usage_filters_and_pagination,
    usage::usage_rejects_bad_queries,
    budgets::hard_limit_admits_what_fits_and_settles_into_spend,
    budgets::every_scope_must_fit_and_refusal_holds_nothing,
    budgets::concurrent_reservations_never_pass_the_limit,
    budgets::prepaid_balance_tops_up_and_draws_down,
    budgets::soft_limit_is_reported_once_per_period,
    budgets::budgets_are_scoped_to_their_org,
    budgets::a_new_monthly_budget_counts_the_month_so_far,
    budgets::progress_grows_and_recovery_sees_it,
    budgets::concurrent_reserves_and_settlements_never_overspend,
    budgets::concurrent_reservations_never_overdraw_a_prepaid_balance,
    budgets::prepaid_overage_is_charged_and_blocks_until_topped_up,
    budgets::a_monthly_budget_starts_again_each_month_and_a_balance_does_not,
    budgets::settle_and_release_are_idempotent_on_budgets,
    budgets::soft_limits_are_reported_once_under_concurrency_and_again_next_period,
    accounts::prices_apply_from_their_time_and_keep_history,
    accounts::plans_are_assigned_to_members_and_use_is_counted,
    accounts::sessions_end_on_revoke_and_expiry,
    front_door::pending_signups_are_approved_or_rejected_once,
    front_door::throttle_rows_update_atomically_and_expire,
    front_door::pending_signups_move_with_the_local_fold,
    conversations::conversations_keep_messages_in_order_and_truncate,
    conversations::conversations_list_newest_first_search_rename_and_delete,
    conversations::conversations_are_isolated_by_org_and_user,
    fold::a_lone_local_org_is_renamed_to_default_on_open,
    fold::local_and_default_merge_without_losing_a_row,
    fold::a_kept_monthly_budget_counts_the_merged_months_spend,
    fold::several_local_orgs_become_one_default,
    fold::concurrent_opens_fold_once,
    stored_completions::stored_completions_page_filter_update_and_delete,
    stored_completions::stored_completions_are_isolated_by_org_and_project,
    responses::responses_are_stored_updated_and_deleted,
    responses::responses_are_isolated_by_org_and_project,
    responses::usage_is_grouped_by_endpoint,
}

/// SQLite alone: PostgreSQL has no such log.
mod sqlite_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_failing_as_a_whole_runs_again_write_by_write() {
        crate::support::on_sqlite(
            crate::batch::a_batch_failing_as_a_whole_runs_again_write_by_write,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_checkpointer_copies_the_log_and_it_restarts() {
        crate::support::on_sqlite(
            crate::checkpoint::the_checkpointer_copies_the_log_and_it_restarts,
        )
        .await;
    }
}
