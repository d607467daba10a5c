//! The `chat` projection.

use async_trait::async_trait;
use domain::chat::{
    ChatEvent, MessageEvent, ModerationEvent, NoticeEvent, OperationEvent, ProfileEvent, ReadEvent,
    ReportEvent,
};
use eventstore::{tx_exec, StoredEvent, Tx};

pub struct ChatProjection;

impl ChatProjection {
    /// The projection's name: its checkpoint, and what read-your-writes waits on.
    pub const NAME: &'static str = "chat";
}

#[async_trait]
impl crate::Projection for ChatProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&[
            <domain::chat::Profile as domain::Aggregate>::TYPE,
            <domain::chat::Chat as domain::Aggregate>::TYPE,
            <domain::chat::Operation as domain::Aggregate>::TYPE,
            <domain::chat::Message as domain::Aggregate>::TYPE,
            <domain::chat::Moderation as domain::Aggregate>::TYPE,
            <domain::chat::Report as domain::Aggregate>::TYPE,
            <domain::chat::Notice as domain::Aggregate>::TYPE,
            <domain::chat::ReadPosition as domain::Aggregate>::TYPE,
        ])
    }

    async fn apply(&self, tx: &mut Tx, e: &StoredEvent) -> anyhow::Result<()> {
        match e.aggregate_type.as_str() {
            "profile" => {
                let ProfileEvent::ProfileSynced { user_id, data, at } =
                    domain::codec::decode(&e.event_type, e.payload.clone())?;
                tx_exec!(
                    tx,
                    "INSERT INTO profiles (user_id, nickname, nickname_lower, avatar_url, roles, discord_id, updated_at, seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id) DO UPDATE SET \
                     nickname = excluded.nickname, nickname_lower = excluded.nickname_lower, avatar_url = excluded.avatar_url, \
                     roles = excluded.roles, discord_id = excluded.discord_id, updated_at = excluded.updated_at",
                    user_id,
                    &data.nickname,
                    data.nickname.to_lowercase(),
                    data.avatar_url,
                    serde_json::to_string(&data.roles)?,
                    data.discord_id,
                    at,
                    e.position
                )?;
            }
            "chat" => {
                let chat_id = e.aggregate_id.clone();
                match domain::codec::decode::<ChatEvent>(&e.event_type, e.payload.clone())? {
                    ChatEvent::ChatCreated {
                        kind,
                        name,
                        slug,
                        is_private,
                        created_by,
                        members,
                        settings,
                        at,
                        ..
                    } => {
                        tx_exec!(
                            tx,
                            "INSERT INTO chats (id, type, name, slug, is_private, created_by, created_at, updated_at, member_count, settings, seq) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)",
                            &chat_id,
                            kind.as_str(),
                            name,
                            slug,
                            is_private,
                            created_by,
                            at,
                            members.len() as i64,
                            serde_json::to_string(&settings)?,
                            e.position
                        )?;
                        for m in members {
                            tx_exec!(
                                tx,
                                "INSERT INTO chat_members (chat_id, user_id, membership_id, role, joined_at) VALUES ($1, $2, $3, $4, $5)",
                                &chat_id,
                                m.user_id,
                                m.membership_id.to_string(),
                                m.role.as_str(),
                                m.joined_at
                            )?;
                        }
                    }
                    ChatEvent::ChatUpdated {
                        name,
                        is_private,
                        at,
                    } => {
                        tx_exec!(
                            tx,
                            "UPDATE chats SET name = COALESCE($2, name), is_private = COALESCE($3, is_private), updated_at = $4 WHERE id = $1",
                            &chat_id,
                            name,
                            is_private,
                            at
                        )?;
                    }
                    ChatEvent::MemberJoined { member } => {
                        tx_exec!(
                            tx,
                            "INSERT INTO chat_members (chat_id, user_id, membership_id, role, joined_at, left_at) VALUES ($1, $2, $3, $4, $5, NULL) \
                             ON CONFLICT (chat_id, user_id) DO UPDATE SET membership_id = excluded.membership_id, role = excluded.role, \
                             joined_at = excluded.joined_at, left_at = NULL",
                            &chat_id,
                            member.user_id,
                            member.membership_id.to_string(),
                            member.role.as_str(),
                            member.joined_at
                        )?;
                        tx_exec!(
                            tx,
                            "UPDATE chats SET member_count = member_count + 1 WHERE id = $1",
                            &chat_id
                        )?;
                    }
                    ChatEvent::SettingsChanged { settings, at, .. } => {
                        tx_exec!(
                            tx,
                            "UPDATE chats SET settings = $2, retention_days = $3, updated_at = $4 WHERE id = $1",
                            &chat_id,
                            serde_json::to_string(&settings)?,
                            settings.retention_days,
                            at
                        )?;
                    }
                    ChatEvent::MemberLeft { user_id, at, .. } => {
                        tx_exec!(tx, "UPDATE chat_members SET left_at = $3 WHERE chat_id = $1 AND user_id = $2", &chat_id, user_id, at)?;
                        tx_exec!(
                            tx,
                            "UPDATE chats SET member_count = member_count - 1 WHERE id = $1",
                            &chat_id
                        )?;
                    }
                }
            }
            "operation" => {
                match domain::codec::decode::<OperationEvent>(&e.event_type, e.payload.clone())? {
                    OperationEvent::MessageSubmitted { submission, at } => {
                        tx_exec!(
                        tx,
                        "INSERT INTO chat_operations (id, user_id, chat_id, status, message_id, error, created_at, updated_at) \
                         VALUES ($1, $2, $3, 'accepted', NULL, NULL, $4, $4)",
                        &e.aggregate_id,
                        submission.author_id,
                        submission.chat_id.to_string(),
                        at
                    )?;
                    }
                    OperationEvent::OperationCompleted { message_id, at } => {
                        tx_exec!(
                        tx,
                        "UPDATE chat_operations SET status = 'completed', message_id = $2, updated_at = $3 WHERE id = $1",
                        &e.aggregate_id,
                        message_id.to_string(),
                        at
                    )?;
                    }
                    // Retention: a rejected submission past its chat's retention is gone.
                    OperationEvent::OperationExpired { .. } => {
                        tx_exec!(
                            tx,
                            "DELETE FROM chat_operations WHERE id = $1",
                            &e.aggregate_id
                        )?;
                    }
                    OperationEvent::OperationRejected { error, at } => {
                        tx_exec!(
                        tx,
                        "UPDATE chat_operations SET status = 'rejected', error = $2, updated_at = $3 WHERE id = $1",
                        &e.aggregate_id,
                        error,
                        at
                    )?;
                    }
                }
            }
            "message" => {
                match domain::codec::decode::<MessageEvent>(&e.event_type, e.payload.clone())? {
                    MessageEvent::MessageEdited {
                        text,
                        at,
                        filter_matches,
                    } => {
                        tx_exec!(
                            tx,
                            "UPDATE chat_messages SET text = $2, edited_at = $3, filtered = $4, filter_matches = $5 WHERE id = $1",
                            &e.aggregate_id,
                            text,
                            at,
                            !filter_matches.is_empty(),
                            serde_json::to_string(&filter_matches)?
                        )?;
                    }
                    MessageEvent::MessageFlagged { at, .. } => {
                        tx_exec!(
                            tx,
                            "UPDATE chat_messages SET flagged_at = $2 WHERE id = $1",
                            &e.aggregate_id,
                            at
                        )?;
                    }
                    MessageEvent::ReactionAdded { reaction } => {
                        tx_exec!(
                            tx,
                            "INSERT INTO chat_reactions (id, message_id, user_id, emoji, created_at) VALUES ($1, $2, $3, $4, $5)",
                            reaction.id.to_string(),
                            &e.aggregate_id,
                            reaction.user_id,
                            reaction.emoji,
                            reaction.created_at
                        )?;
                    }
                    MessageEvent::ReactionRemoved { reaction_id, .. } => {
                        tx_exec!(
                            tx,
                            "DELETE FROM chat_reactions WHERE id = $1",
                            reaction_id.to_string()
                        )?;
                    }
                    // Retention: the message is gone from every read model.
                    MessageEvent::MessageExpired { .. } => {
                        tx_exec!(
                            tx,
                            "DELETE FROM chat_messages WHERE id = $1",
                            &e.aggregate_id
                        )?;
                        tx_exec!(
                            tx,
                            "DELETE FROM chat_reactions WHERE message_id = $1",
                            &e.aggregate_id
                        )?;
                    }
                    MessageEvent::MessageDeleted { at, .. } => {
                        tx_exec!(
                            tx,
                            "UPDATE chat_messages SET deleted_at = $2 WHERE id = $1",
                            &e.aggregate_id,
                            at
                        )?;
                    }
                    MessageEvent::MessagePosted {
                        submission,
                        created_at,
                    } => {
                        tx_exec!(
                    tx,
                    "INSERT INTO chat_messages (id, chat_id, type, author_id, text, metadata, attachments, created_at, filtered, filter_matches, seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    &e.aggregate_id,
                    submission.chat_id.to_string(),
                    submission.kind.as_str(),
                    submission.author_id,
                    submission.text,
                    submission.metadata.to_string(),
                    serde_json::to_string(&submission.attachments)?,
                    created_at,
                    !submission.filter_matches.is_empty(),
                    serde_json::to_string(&submission.filter_matches)?,
                    e.position
                )?;
                    }
                }
            }
            "moderation" => {
                match domain::codec::decode::<ModerationEvent>(&e.event_type, e.payload.clone())? {
                    ModerationEvent::SanctionApplied { sanction: s } => {
                        tx_exec!(
                            tx,
                            "INSERT INTO chat_sanctions (id, user_id, type, scope, chat_id, reason, applied_by, applied_at, until, seq) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                            s.id.to_string(),
                            s.user_id,
                            s.kind.as_str(),
                            s.scope.as_str(),
                            s.chat_id.map(|c| c.to_string()),
                            s.reason,
                            s.applied_by,
                            s.applied_at,
                            s.until,
                            e.position
                        )?;
                    }
                    ModerationEvent::SanctionRevoked {
                        sanction_id,
                        by,
                        at,
                    } => {
                        tx_exec!(
                            tx,
                            "UPDATE chat_sanctions SET revoked_at = $2, revoked_by = $3 WHERE id = $1",
                            sanction_id.to_string(),
                            at,
                            by
                        )?;
                    }
                }
            }
            "report" => {
                match domain::codec::decode::<ReportEvent>(&e.event_type, e.payload.clone())? {
                    ReportEvent::ReportFiled { report: r, at } => {
                        tx_exec!(
                            tx,
                            "INSERT INTO chat_reports (id, reporter_id, message_id, chat_id, reported_user_id, reason, evidence, status, created_at, updated_at, seq) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $8, $9)",
                            r.id.to_string(),
                            r.reporter_id,
                            r.message_id.map(|m| m.to_string()),
                            r.chat_id.map(|c| c.to_string()),
                            r.reported_user_id,
                            r.reason,
                            serde_json::to_string(&r.evidence)?,
                            at,
                            e.position
                        )?;
                    }
                    ReportEvent::ReportStatusChanged {
                        status, notes, at, ..
                    } => {
                        tx_exec!(
                            tx,
                            "UPDATE chat_reports SET status = $2, resolution_notes = COALESCE($3, resolution_notes), updated_at = $4 WHERE id = $1",
                            &e.aggregate_id,
                            status.as_str(),
                            notes,
                            at
                        )?;
                    }
                }
            }
            "notice" => {
                let NoticeEvent::NoticeBroadcast { notice: n, at } =
                    domain::codec::decode(&e.event_type, e.payload.clone())?;
                tx_exec!(
                    tx,
                    "INSERT INTO chat_notices (id, title, body, created_by, chat_ids, roles, created_at, seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    n.id.to_string(),
                    n.title,
                    n.body,
                    n.created_by,
                    serde_json::to_string(&n.chat_ids)?,
                    serde_json::to_string(&n.roles)?,
                    at,
                    e.position
                )?;
            }
            "read_position" => {
                // The aggregate only moves forward, so the latest event is the position.
                let ReadEvent::ReadPositionMoved {
                    chat_id,
                    user_id,
                    message_id,
                    message_created_at,
                    at,
                } = domain::codec::decode(&e.event_type, e.payload.clone())?;
                tx_exec!(
                    tx,
                    "INSERT INTO chat_reads (chat_id, user_id, last_read_message_id, last_read_message_at, last_read_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (chat_id, user_id) DO UPDATE SET \
                     last_read_message_id = excluded.last_read_message_id, \
                     last_read_message_at = excluded.last_read_message_at, last_read_at = excluded.last_read_at",
                    chat_id.to_string(),
                    user_id,
                    message_id.to_string(),
                    message_created_at,
                    at
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut Tx) -> anyhow::Result<()> {
        for t in [
            "profiles",
            "chats",
            "chat_members",
            "chat_messages",
            "chat_operations",
            "chat_sanctions",
            "chat_reactions",
            "chat_reports",
            "chat_notices",
            "chat_reads",
        ] {
            tx_exec!(tx, &format!("DELETE FROM {t}"))?;
        }
        Ok(())
    }
}
