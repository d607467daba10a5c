-- Communication read models, built by the `chat` projection: profiles, chats, memberships.
CREATE TABLE profiles (
    user_id        TEXT        PRIMARY KEY,
    nickname       TEXT        NOT NULL,
    nickname_lower TEXT        NOT NULL,
    avatar_url     TEXT,
    roles          TEXT        NOT NULL,
    discord_id     TEXT,
    updated_at     TEXT        NOT NULL,
    seq            INTEGER     NOT NULL
);
CREATE INDEX profiles_seq_idx ON profiles (seq);

CREATE TABLE chats (
    id           TEXT        PRIMARY KEY,
    type         TEXT        NOT NULL,
    name         TEXT,
    slug         TEXT,
    is_private   INTEGER     NOT NULL,
    created_by   TEXT        NOT NULL,
    created_at   TEXT        NOT NULL,
    updated_at   TEXT        NOT NULL,
    member_count INTEGER     NOT NULL,
    settings     TEXT        NOT NULL,
    seq          INTEGER     NOT NULL
);
CREATE INDEX chats_seq_idx ON chats (seq);

CREATE TABLE chat_members (
    chat_id       TEXT        NOT NULL,
    user_id       TEXT        NOT NULL,
    membership_id TEXT        NOT NULL,
    role          TEXT        NOT NULL,
    joined_at     TEXT        NOT NULL,
    left_at       TEXT       ,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_members_user_idx ON chat_members (user_id) WHERE left_at IS NULL;

-- Presence is ephemeral (seeds 001/003 keep it in a TTL store): last heartbeat per user.
CREATE TABLE presence (
    user_id   TEXT        PRIMARY KEY,
    last_seen TEXT        NOT NULL
);
