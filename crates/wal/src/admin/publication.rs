//! The publication check: it exists (or outboxd may and can create it), publishes the outbox table's inserts,
//! and nothing that would be streamed only to be ignored, or lost (row filters, column lists, partitions).

use super::checks::{relation_kind, CheckCtx, Findings};
use super::preflight::Check;
use crate::config::OutboxMode;
use crate::setup;
use crate::WalError;

pub(crate) async fn publication(ctx: &CheckCtx<'_>) -> Result<Check, WalError> {
    let config = ctx.config;
    let publication = &config.publication;
    let table_mode = config.mode == OutboxMode::Table;
    let (schema, table) = ctx.table();
    let qualified = format!("{schema}.{table}");
    let create = setup::create_publication_sql(config)?;
    let sql = "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot \
               FROM pg_publication WHERE pubname = $1";
    let Some(p) = ctx.opt("looking up the publication", sql, &[publication]).await? else {
        return missing_publication(ctx, &create).await;
    };
    let (all_tables, inserts, updates, deletes, truncates, via_root): (bool, bool, bool, bool, bool, bool) =
        (p.get(0), p.get(1), p.get(2), p.get(3), p.get(4), p.get(5));
    let sql = "SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables \
               WHERE pubname = $1 ORDER BY 1";
    let tables: Vec<String> = ctx
        .client
        .query(sql, &[publication])
        .await
        .map_err(WalError::pg("reading the publication's tables"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut found = Findings::new(Check::PUBLICATION);
    if !inserts {
        found.fail(
            format!("{publication} does not publish inserts"),
            format!("ALTER PUBLICATION {publication} SET (publish = 'insert');"),
        );
    }
    if table_mode && !tables.contains(&qualified) {
        found.fail(
            format!("{publication} does not include {qualified}"),
            format!("ALTER PUBLICATION {publication} ADD TABLE {qualified};"),
        );
    }
    let others: Vec<&str> = tables
        .iter()
        .filter(|t| !table_mode || **t != qualified)
        .map(String::as_str)
        .collect();
    if all_tables {
        found.warn(
            format!(
                "{publication} is FOR ALL TABLES: every table's changes are decoded and sent to outboxd, \
                 which ignores them"
            ),
            format!("recreate it for the outbox table only: DROP PUBLICATION {publication}; {create};"),
        );
    } else if !others.is_empty() {
        let fix = if table_mode {
            format!("ALTER PUBLICATION {publication} SET TABLE {qualified};")
        } else {
            format!(
                "ALTER PUBLICATION {publication} DROP TABLE {};",
                others.join(", ")
            )
        };
        let detail = format!(
            "{publication} also publishes {}: their changes are decoded and sent to outboxd, which ignores \
             them",
            others.join(", ")
        );
        found.warn(detail, fix);
    }
    let extra: Vec<&str> = [(updates, "update"), (deletes, "delete"), (truncates, "truncate")]
        .into_iter()
        .filter_map(|(on, op)| on.then_some(op))
        .collect();
    if !extra.is_empty() {
        found.warn(
            format!(
                "{publication} publishes {} besides insert: cleanup DELETEs will be streamed and ignored",
                extra.join(", ")
            ),
            format!(
                "recreate it WITH (publish = 'insert'), or in place: ALTER PUBLICATION {publication} SET \
                 (publish = 'insert');"
            ),
        );
    }
    if table_mode && !via_root && is_partitioned(ctx, &schema, &table).await? {
        found.fail(
            format!(
                "{qualified} is partitioned and {publication} publishes its inserts under the partitions' \
                 names, which outboxd does not read"
            ),
            format!("ALTER PUBLICATION {publication} SET (publish_via_partition_root = true);"),
        );
    }
    if table_mode && tables.contains(&qualified) {
        filters(ctx, &qualified, &schema, &table, &mut found).await?;
    }
    let what = if table_mode {
        format!("inserts of {qualified} only")
    } else {
        "no table (logical messages only)".to_string()
    };
    Ok(found.into_check(format!("{publication} publishes {what}")))
}

async fn is_partitioned(ctx: &CheckCtx<'_>, schema: &str, table: &str) -> Result<bool, WalError> {
    Ok(relation_kind(ctx, schema, table)
        .await?
        .is_some_and(|(kind, _)| kind == "p"))
}

/// PostgreSQL 15+: a row filter or a column list on the outbox table loses events or fields.
async fn filters(
    ctx: &CheckCtx<'_>,
    qualified: &str,
    schema: &str,
    table: &str,
    found: &mut Findings,
) -> Result<(), WalError> {
    let publication = &ctx.config.publication;
    let version: i32 = ctx
        .row(
            "reading server_version_num",
            "SELECT current_setting('server_version_num')::int",
            &[],
        )
        .await?
        .get(0);
    if version < 150_000 {
        return Ok(());
    }
    let sql = "SELECT pg_get_expr(pr.prqual, pr.prrelid), pr.prattrs IS NOT NULL FROM pg_publication_rel pr \
               JOIN pg_publication p ON p.oid = pr.prpubid JOIN pg_class c ON c.oid = pr.prrelid \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE p.pubname = $1 AND n.nspname = $2 AND c.relname = $3";
    let Some(r) = ctx
        .opt(
            "reading the publication's filters",
            sql,
            &[publication, &schema, &table],
        )
        .await?
    else {
        return Ok(());
    };
    let (row_filter, column_list): (Option<String>, bool) = (r.get(0), r.get(1));
    let reset = format!("ALTER PUBLICATION {publication} SET TABLE {qualified};");
    if let Some(filter) = row_filter {
        found.warn(
            format!(
                "{publication} publishes only the rows of {qualified} WHERE {filter}: other rows are never \
                 relayed"
            ),
            reset.clone(),
        );
    }
    if column_list {
        found.warn(
            format!(
                "{publication} publishes only some columns of {qualified}: mapped columns may arrive empty"
            ),
            reset,
        );
    }
    Ok(())
}

/// The publication does not exist: fine when outboxd may and can create it.
async fn missing_publication(ctx: &CheckCtx<'_>, create: &str) -> Result<Check, WalError> {
    let name = Check::PUBLICATION;
    let publication = &ctx.config.publication;
    if !ctx.config.create_publication {
        return Ok(Check::fail(
            name,
            format!("{publication} does not exist and create_publication = false"),
            format!("{create}; (or set create_publication = true)"),
        ));
    }
    let (schema, table) = ctx.table();
    let sql = "SELECT current_user::text, has_database_privilege(current_database(), 'CREATE'), \
               COALESCE((SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2), true)";
    let r = ctx
        .row(
            "checking the right to create the publication",
            sql,
            &[&schema, &table],
        )
        .await?;
    let (user, may_create, owns): (String, bool, bool) = (r.get(0), r.get(1), r.get(2));
    let owns = owns || ctx.config.mode != OutboxMode::Table;
    Ok(if may_create && owns {
        Check::ok(
            name,
            format!("{publication} does not exist yet; outboxd will create it: {create}"),
        )
    } else {
        let why = if may_create {
            format!("it does not own {schema}.{table}")
        } else {
            "it has no CREATE privilege on the database".to_string()
        };
        Check::fail(
            name,
            format!("{publication} does not exist, and user {user:?} may not create it: {why}"),
            format!("create it as the table's owner: {create};"),
        )
    })
}
