-- Communication read models, built by the `chat` projection: profiles, chats, memberships.
CREATE TABLE profiles (
    user_id        text        PRIMARY KEY,
    nickname       text        NOT NULL,
    nickname_lower text        NOT NULL,
    avatar_url     text,
    roles          text        NOT NULL,
    discord_id     text,
    updated_at     timestamptz NOT NULL,
    seq            bigint      NOT NULL
);
CREATE INDEX profiles_seq_idx ON profiles (seq);

CREATE TABLE chats (
    id           text        PRIMARY KEY,
    type         text        NOT NULL,
    name         text,
    slug         text,
    is_private   boolean     NOT NULL,
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    member_count bigint      NOT NULL,
    settings     text        NOT NULL,
    seq          bigint      NOT NULL
);
CREATE INDEX chats_seq_idx ON chats (seq);

CREATE TABLE chat_members (
    chat_id       text        NOT NULL,
    user_id       text        NOT NULL,
    membership_id text        NOT NULL,
    role          text        NOT NULL,
    joined_at     timestamptz NOT NULL,
    left_at       timestamptz,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_members_user_idx ON chat_members (user_id) WHERE left_at IS NULL;

-- Presence is ephemeral (seeds 001/003 keep it in a TTL store): last heartbeat per user.
CREATE TABLE presence (
    user_id   text        PRIMARY KEY,
    last_seen timestamptz NOT NULL
);
