//! `GET /reports/stock` and `GET /reports/consumption`, as JSON or CSV.

use super::*;

#[derive(Debug, Deserialize, Clone, Copy, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
pub(super) enum Format {
    #[default]
    Json,
    Csv,
}

#[derive(Debug, Deserialize)]
pub(super) struct StockReportQuery {
    #[serde(default)]
    pub(super) format: Format,
}

/// One CSV field, quoted when it needs to be (RFC 4180); a field a spreadsheet could take for a
/// formula is neutralised with a leading `'`: one that starts with `= + - @`, a tab or a carriage
/// return, or with whitespace and then one of `= + - @`.
pub(crate) fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['\t', '\r']) || s.trim_start().starts_with(['=', '+', '-', '@']);
    let s = if formula {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub(super) fn csv_response(text: String, filename: &str) -> Response {
    (
        [
            ("content-type", "text/csv; charset=utf-8".to_string()),
            (
                "content-disposition",
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        text,
    )
        .into_response()
}

pub(super) async fn stock_report(
    State(state): State<AppState>,
    _: Auth,
    ApiQuery(p): ApiQuery<StockReportQuery>,
) -> ApiResult<Response> {
    let generated_at = trunc(Utc::now());
    let items = q::all_items(&state.db).await?;
    let mut soon = soon_by_item(q::soon_expiring(&state.db, cutoff(&state), None).await?);
    if p.format == Format::Csv {
        let mut out =
            String::from("item_id,name,unit,on_hand,soon_expiring_qty,next_expiry_date\n");
        for i in items {
            let s = soon.remove(&i.id).unwrap_or_default();
            let qty: i64 = s.iter().map(|b| b.qty_remaining).sum();
            let next = s
                .first()
                .map(|b| b.expiry_date.to_string())
                .unwrap_or_default();
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                i.id,
                csv_field(&i.name),
                csv_field(&i.unit),
                i.stock_qty,
                qty,
                next
            ));
        }
        return Ok(csv_response(out, "stock.csv"));
    }
    let rows: Vec<Value> = items
        .into_iter()
        .map(|i| {
            let s = soon.remove(&i.id).unwrap_or_default();
            json!({
                "item_id": i.id, "name": i.name, "unit": i.unit, "on_hand": i.stock_qty,
                "soon_expiring": s.iter().map(|b| json!({"batch_id": b.batch_id, "expiry_date": b.expiry_date, "qty": b.qty_remaining})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({"generated_at": generated_at, "items": rows})).into_response())
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum GroupByParam {
    Item,
    User,
    Day,
}

#[derive(Debug, Deserialize)]
pub(super) struct ConsumptionReportQuery {
    pub(super) group_by: Option<GroupByParam>,
    #[serde(default, deserialize_with = "range_start")]
    pub(super) from: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "range_end")]
    pub(super) to: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(super) format: Format,
}

pub(super) async fn consumption_report(
    State(state): State<AppState>,
    _: Auth,
    ApiQuery(p): ApiQuery<ConsumptionReportQuery>,
) -> ApiResult<Response> {
    check_range(p.from, p.to)?;
    let (group_by, name) = match p.group_by.unwrap_or(GroupByParam::Item) {
        GroupByParam::Item => (GroupBy::Item, "item"),
        GroupByParam::User => (GroupBy::User, "user"),
        GroupByParam::Day => (GroupBy::Day, "day"),
    };
    let filter = ConsumptionFilter {
        from: p.from,
        to: p.to,
        ..Default::default()
    };
    let rows = q::consumption_report(&state.db, group_by, &filter).await?;
    if p.format == Format::Csv {
        let mut out = String::from("key,qty\n");
        for r in rows {
            out.push_str(&format!("{},{}\n", csv_field(&r.key), r.qty));
        }
        return Ok(csv_response(out, "consumption.csv"));
    }
    Ok(Json(json!({
        "generated_at": trunc(Utc::now()),
        "group_by": name,
        "rows": rows.into_iter().map(|r| json!({"key": r.key, "qty": r.qty})).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("Tea Bags"), "Tea Bags");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
        // Security review L2: a leading tab or carriage return, or whitespace before a formula.
        assert_eq!(csv_field("\t=HYPERLINK(1)"), "'\t=HYPERLINK(1)");
        assert_eq!(csv_field("  =1+1"), "'  =1+1");
        assert_eq!(csv_field("\rx"), "\"'\rx\"");
    }

    #[test]
    fn money_is_a_number_with_two_decimals() {
        let b = BatchDto {
            id: "b".into(),
            item_id: "i".into(),
            batch_code: "c".into(),
            supplier_ref: None,
            expiry_date: None,
            qty_received: 1,
            qty_remaining: 1,
            currency: "USD".into(),
            cost_total: "49.9".parse().unwrap(),
            received_at: DateTime::UNIX_EPOCH,
        };
        let s = serde_json::to_string(&b).unwrap();
        assert!(s.contains("\"cost_total\":49.90"), "{s}");
    }
}
