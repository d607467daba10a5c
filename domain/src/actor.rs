//! Who is acting: a user id and the roles their token grants.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Student,
    Teacher,
    Executor,
    /// Read-only access to ledgers and the audit feed.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Student,
        Role::Teacher,
        Role::Executor,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Student => "student",
            Role::Teacher => "teacher",
            Role::Executor => "executor",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: String,
    pub roles: Vec<Role>,
}

impl Actor {
    pub fn new(user_id: impl Into<String>, roles: Vec<Role>) -> Self {
        Self {
            user_id: user_id.into(),
            roles,
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    /// Any user who may act in the lab (donate, borrow): every role but a read-only auditor.
    pub fn participates(&self) -> bool {
        self.has_any(&[Role::Admin, Role::Executor, Role::Teacher, Role::Student])
    }

    /// Admins and executors run the lab's stock.
    pub fn manages_stock(&self) -> bool {
        self.has_any(&[Role::Admin, Role::Executor])
    }
}
