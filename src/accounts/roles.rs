//! Staff roles and the named permissions every admin endpoint checks.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a staff member or an API key may do. Each admin endpoint requires one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Permission {
    #[serde(rename = "staff:read")]
    StaffRead,
    #[serde(rename = "staff:manage")]
    StaffManage,
    #[serde(rename = "customers:read")]
    CustomersRead,
    #[serde(rename = "customers:write")]
    CustomersWrite,
    #[serde(rename = "api_keys:manage")]
    ApiKeysManage,
    #[serde(rename = "audit:read")]
    AuditRead,
    #[serde(rename = "products:read")]
    ProductsRead,
    #[serde(rename = "products:write")]
    ProductsWrite,
    #[serde(rename = "jobs:read")]
    JobsRead,
    #[serde(rename = "jobs:manage")]
    JobsManage,
    #[serde(rename = "webhooks:read")]
    WebhooksRead,
    #[serde(rename = "webhooks:manage")]
    WebhooksManage,
    #[serde(rename = "forms:read")]
    FormsRead,
    #[serde(rename = "forms:manage")]
    FormsManage,
    #[serde(rename = "newsletter:read")]
    NewsletterRead,
    #[serde(rename = "newsletter:manage")]
    NewsletterManage,
    #[serde(rename = "settings:manage")]
    SettingsManage,
    #[serde(rename = "orders:read")]
    OrdersRead,
    #[serde(rename = "orders:write")]
    OrdersWrite,
    #[serde(rename = "content:read")]
    ContentRead,
    #[serde(rename = "content:write")]
    ContentWrite,
}

impl Permission {
    pub const ALL: [Permission; 21] = [
        Self::StaffRead,
        Self::StaffManage,
        Self::CustomersRead,
        Self::CustomersWrite,
        Self::ApiKeysManage,
        Self::AuditRead,
        Self::ProductsRead,
        Self::ProductsWrite,
        Self::JobsRead,
        Self::JobsManage,
        Self::WebhooksRead,
        Self::WebhooksManage,
        Self::FormsRead,
        Self::FormsManage,
        Self::NewsletterRead,
        Self::NewsletterManage,
        Self::SettingsManage,
        Self::OrdersRead,
        Self::OrdersWrite,
        Self::ContentRead,
        Self::ContentWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::StaffRead => "staff:read",
            Self::StaffManage => "staff:manage",
            Self::CustomersRead => "customers:read",
            Self::CustomersWrite => "customers:write",
            Self::ApiKeysManage => "api_keys:manage",
            Self::AuditRead => "audit:read",
            Self::ProductsRead => "products:read",
            Self::ProductsWrite => "products:write",
            Self::JobsRead => "jobs:read",
            Self::JobsManage => "jobs:manage",
            Self::WebhooksRead => "webhooks:read",
            Self::WebhooksManage => "webhooks:manage",
            Self::FormsRead => "forms:read",
            Self::FormsManage => "forms:manage",
            Self::NewsletterRead => "newsletter:read",
            Self::NewsletterManage => "newsletter:manage",
            Self::SettingsManage => "settings:manage",
            Self::OrdersRead => "orders:read",
            Self::OrdersWrite => "orders:write",
            Self::ContentRead => "content:read",
            Self::ContentWrite => "content:write",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// A staff member's role. Owners manage staff; admins run the shop; staff read and serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Staff,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Staff => "staff",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Self::Owner, Self::Admin, Self::Staff].into_iter().find(|r| r.as_str() == name)
    }

    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Self::Owner => &Permission::ALL,
            Self::Admin => &[
                StaffRead,
                CustomersRead,
                CustomersWrite,
                ApiKeysManage,
                AuditRead,
                ProductsRead,
                ProductsWrite,
                JobsRead,
                JobsManage,
                WebhooksRead,
                WebhooksManage,
                FormsRead,
                FormsManage,
                NewsletterRead,
                NewsletterManage,
                SettingsManage,
                OrdersRead,
                OrdersWrite,
                ContentRead,
                ContentWrite,
            ],
            Self::Staff => &[StaffRead, CustomersRead, ProductsRead, FormsRead, OrdersRead, ContentRead],
        }
    }

    pub fn grants(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owners_manage_staff_and_every_role_is_a_subset_of_owner() {
        assert!(Role::Owner.grants(Permission::StaffManage));
        assert!(!Role::Admin.grants(Permission::StaffManage));
        assert!(!Role::Staff.grants(Permission::CustomersWrite));
        for role in [Role::Admin, Role::Staff] {
            assert!(role.permissions().iter().all(|p| Role::Owner.grants(*p)));
        }
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
    }
}
