#include "agent/hq_commands.h"

#include <fmt/format.h>

#include "agent/control_ops.h"
#include "agent/status.h"
#include "base/log.h"

namespace storewatch::agent {

using nlohmann::json;

// --- CommandSink ---------------------------------------------------------------

void CommandSink::submit(Change change) {
  if (!gathering_) {
    next_.submit(std::move(change));
    return;
  }
  std::visit(
      [this](auto&& c) {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, AppliedCommand> || std::is_same_v<T, IncidentRows> ||
                      std::is_same_v<T, sync::NoticeUpdate>) {
          next_.submit(std::move(c));  // not the engine's; never nested
        } else {
          gathered_.emplace_back(std::move(c));
        }
      },
      std::move(change));
}

void CommandSink::begin() {
  gathering_ = true;
}

void CommandSink::finish(CommandRow row) {
  gathering_ = false;
  next_.submit(AppliedCommand{std::move(row), std::move(gathered_)});
  gathered_.clear();
}

// --- HqCommands ----------------------------------------------------------------

namespace {

std::optional<Engine::Action> action_of(sync::CommandOp op) {
  switch (op) {
    case sync::CommandOp::ack: return Engine::Action::ack;
    case sync::CommandOp::resolve: return Engine::Action::resolve;
    case sync::CommandOp::close: return Engine::Action::close;
    case sync::CommandOp::note: return Engine::Action::note;
    default: return std::nullopt;
  }
}

}  // namespace

HqCommands::HqCommands(const RunningConfig& config, const Clock& clock, Engine& engine,
                       Store& reader, CommandSink& sink, HqCommandHooks hooks)
    : config_(config),
      clock_(clock),
      engine_(engine),
      reader_(reader),
      sink_(sink),
      hooks_(std::move(hooks)) {
  // Said at start, not only at the first command.
  if (config_->sync.command_key_file.empty()) return;
  if (auto a = auth(); !a) {
    log::error("sync: {}", a.error().message);
  } else {
    log::info("sync: HQ commands must be signed with the key of {}",
              config_->sync.command_key_file.string());
  }
}

Result<sync::CommandAuth> HqCommands::auth() {
  sync::CommandAuth a;
  a.store = config_->store.id;
  a.now = std::chrono::duration_cast<std::chrono::seconds>(clock_.wall_now().time_since_epoch())
              .count();
  const auto& file = config_->sync.command_key_file;
  if (file.empty()) return a;
  // Read for every command (they are few): a new key in the same file is
  // used at once, and a file that went missing refuses, never lets through.
  auto key = config::read_command_key(file);
  if (!key) {
    return Error{fmt::format(
        "[sync] command_key_file cannot be used: {}; no HQ command is taken until it can",
        key.error().message)};
  }
  a.key = std::move(*key);
  return a;
}

void HqCommands::on_command(std::string_view payload) {
  ++stats_.received;
  auto a = auth();
  if (!a) {
    ++stats_.refused;
    const auto id = sync::parse_command(payload).id;
    log::error("sync: refused an HQ command (id {}): {}", id.value_or("unknown"),
               a.error().message);
    if (hooks_.answer) hooks_.answer(sync::command_refused(id, a.error().message));
    return;
  }
  sync::ParsedCommand parsed = sync::parse_command(payload, *a);
  if (!parsed.command) {
    ++stats_.refused;
    log::warn("sync: refused an HQ command (id {}, {} bytes): {}", parsed.id.value_or("unknown"),
              payload.size(), parsed.error);
    if (hooks_.answer) hooks_.answer(sync::command_refused(parsed.id, parsed.error));
    return;
  }
  const sync::Command& cmd = *parsed.command;
  for (const auto& [probe, waiting] : probe_runs_) {
    for (const auto& w : waiting) {
      if (w.id == cmd.id) {
        // Its probe is running: the answer comes when it finishes.
        ++stats_.duplicates;
        return;
      }
    }
  }
  std::optional<std::string> answer;
  bool committed = true;
  if (auto it = recent_.find(cmd.id); it != recent_.end()) {
    answer = it->second;
    committed = false;  // perhaps not yet: it waits like the first answer
  } else {
    auto known = reader_.command(cmd.id);
    if (!known) {
      // Without knowing whether it was applied, applying it could do it twice.
      log::error("sync: HQ command {}: {}", cmd.id, known.error().message);
      if (hooks_.answer) {
        hooks_.answer(sync::command_refused(
            cmd.id, "cannot read the applied command ids: " + known.error().message));
      }
      return;
    }
    if (*known) answer = (*known)->result;
  }
  if (answer) {
    ++stats_.duplicates;
    log::info("sync: HQ command {} ({}) was applied before; answering as then", cmd.id,
              sync::to_string(cmd.op));
    json again = json::parse(*answer, nullptr, /*allow_exceptions=*/false);
    if (again.is_object()) {
      again["duplicate"] = true;
      *answer = again.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    if (committed) {
      if (hooks_.answer) hooks_.answer(*answer);
    } else {
      send_after_commit(cmd.id, std::move(*answer));
    }
    return;
  }
  apply(cmd);
}

void HqCommands::apply(const sync::Command& cmd) {
  ++stats_.applied;
  auto actor = actor_named("hq:", cmd.by);
  if (!actor) {
    finish(cmd, actor.error());
    return;
  }
  if (auto action = action_of(cmd.op)) {
    sink_.begin();
    auto done = apply_incident_action(engine_, reader_, *action, cmd.incident,
                                      /*allow_prefix=*/false, *actor, cmd.note);
    if (!done) {
      finish(cmd, done.error());
      return;
    }
    json answer{{"incident", done->incident.to_json()}};
    if (done->still_failing) {
      // HQ's resolve is done (no terminal to ask); it says what happens next.
      answer["still_failing"] = still_failing_json(*done->still_failing, SystemClock().wall_now());
    }
    finish(cmd, Result<json>(std::move(answer)));
    return;
  }
  switch (cmd.op) {
    case sync::CommandOp::silence: {
      sink_.begin();
      auto row = apply_silence_add(engine_, cmd.match, cmd.length, cmd.reason, *actor);
      finish(cmd, row ? Result<json>(json{{"silence", row->to_json()}}) : row.error());
      return;
    }
    case sync::CommandOp::resync: {
      log::info("sync: HQ ({}) asks for the events from seq {} again", *actor, cmd.from_seq);
      if (hooks_.resync) hooks_.resync(cmd.from_seq);
      finish(cmd, json{{"from_seq", cmd.from_seq}});
      return;
    }
    case sync::CommandOp::probe_run: {
      if (config_->find_probe(cmd.probe) == nullptr) {
        finish(cmd, Error{fmt::format("no probe \"{}\" in the config", cmd.probe)});
        return;
      }
      if (pending_probe_runs_ >= kMaxPendingProbeRuns) {
        // Busy, not wrong: not kept, so the same id may be sent again later.
        if (hooks_.answer) {
          hooks_.answer(sync::command_refused(
              cmd.id, fmt::format("{} probe runs are already waiting; try again later",
                                  pending_probe_runs_)));
        }
        return;
      }
      log::info("sync: HQ ({}) runs probe {} now", *actor, cmd.probe);
      // Registered first: a result may come back before run_probe returns.
      probe_runs_[cmd.probe].push_back(cmd);
      ++pending_probe_runs_;
      if (!hooks_.run_probe || !hooks_.run_probe(cmd.probe)) {
        auto& waiting = probe_runs_[cmd.probe];
        std::erase_if(waiting, [&](const sync::Command& c) { return c.id == cmd.id; });
        if (waiting.empty()) probe_runs_.erase(cmd.probe);
        --pending_probe_runs_;
        finish(cmd, Error{fmt::format("probe \"{}\" cannot run now", cmd.probe)});
      }
      return;
    }
    default: finish(cmd, Error{"unknown op"}); return;
  }
}

void HqCommands::on_probe_result(const std::string& probe, const probes::ProbeResult& result) {
  auto it = probe_runs_.find(probe);
  if (it == probe_runs_.end()) return;
  std::vector<sync::Command> waiting = std::move(it->second);
  probe_runs_.erase(it);
  pending_probe_runs_ -= waiting.size();
  const config::ProbeConfig* pc = config_->find_probe(probe);
  if (pc == nullptr) return;
  for (const auto& cmd : waiting) {
    finish(cmd, json{{"result", probe_result_json(*pc, result)}});
  }
}

void HqCommands::finish(const sync::Command& cmd, const Result<json>& outcome) {
  const std::string op(sync::to_string(cmd.op));
  std::string answer;
  if (outcome) {
    json fields = *outcome;
    fields["op"] = op;
    answer = sync::command_done(cmd.id, fields);
    log::info("sync: HQ command {} ({}) by hq:{} done", cmd.id, op, cmd.by);
  } else {
    answer = sync::command_refused(cmd.id, outcome.error().message);
    log::info("sync: HQ command {} ({}) by hq:{} refused: {}", cmd.id, op, cmd.by,
              outcome.error().message);
  }
  // With the changes gathered since sink_.begin(), when there are any: one
  // transaction.
  sink_.finish(CommandRow{cmd.id, op, clock_.wall_now(), answer});
  recent_[cmd.id] = answer;
  recent_order_.push_back(cmd.id);
  while (recent_order_.size() > kRecentAnswers) {
    recent_.erase(recent_order_.front());
    recent_order_.pop_front();
  }
  send_after_commit(cmd.id, std::move(answer));
}

void HqCommands::send_after_commit(const std::string& id, std::string answer) {
  unsent_.emplace_back(id, std::move(answer));
  if (unsent_.size() > kMaxUnsent) {
    log::warn("sync: {} answers to HQ commands wait for a commit; dropping the oldest ({})",
              unsent_.size(), unsent_.front().first);
    unsent_.pop_front();
  }
  on_commit();
}

void HqCommands::on_commit() {
  // The writer commits in the order changes were handed to it: once one
  // answer's row is not there yet, the later ones are not either.
  while (!unsent_.empty()) {
    auto row = reader_.command(unsent_.front().first);
    if (!row || !*row) return;
    if (hooks_.answer) hooks_.answer(std::move(unsent_.front().second));
    unsent_.pop_front();
  }
}

}  // namespace storewatch::agent
