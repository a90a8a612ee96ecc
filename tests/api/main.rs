//! One integration-test binary (it links once). Each file is a feature, each test a
//! story: what a user does, and what they get.

mod helpers;

mod access;
mod browser;
mod budgets;
mod cancel;
mod cluster;
mod config_check;
mod configuration;
mod costs;
mod deliverability;
mod edits;
mod events;
mod faults;
mod generate;
mod groups;
mod huiying_up;
mod input;
mod labels;
mod mail_tools;
mod metrics;
mod models;
mod notifications;
mod openai_client;
mod openapi;
mod original;
mod outbound;
mod owners;
mod partition;
mod records;
mod secrets;
mod self_hosted;
mod storage;
mod stuck;
mod subscribers;
mod webhooks;
