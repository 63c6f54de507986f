// The words of the answers to a person's actions (issue 20): who the actor
// is under sudo, and what a resolve of a still-failing probe warns.
#include "agent/control_ops.h"

#include <gtest/gtest.h>

namespace storewatch::agent {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

WallTime at_utc(const char* text) {
  auto t = parse_rfc3339(text);
  EXPECT_TRUE(t.has_value()) << text;
  return t.value_or(WallTime{});
}

TEST(ActorOf, RootStartedThroughSudoIsThePersonWhoRanIt) {
  const Peer root{1, 0, "root"};
  auto dana = actor_of(json{{"sudo_user", "dana"}}, root);
  ASSERT_TRUE(dana) << dana.error().message;
  EXPECT_EQ(dana->name, "cli:dana");
  EXPECT_EQ(dana->provenance(), (json{{"via", "sudo"}, {"sudo_user", "dana"}}));

  auto olga = actor_of(json{{"sudo_user", "dana"}, {"by", "olga"}}, root);
  ASSERT_TRUE(olga);
  EXPECT_EQ(olga->name, "cli:olga") << "--by wins";
  EXPECT_EQ(olga->provenance().value("via", ""), "sudo");

  auto plain = actor_of(json::object(), root);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->name, "cli:root");
  EXPECT_EQ(plain->provenance(), json::object());

  auto bad = actor_of(json{{"sudo_user", "two words"}}, root);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("SUDO_USER"), std::string::npos) << bad.error().message;
}

TEST(ActorOf, OnlyRootMaySpeakForASudoUser) {
  auto nobody = actor_of(json{{"sudo_user", "dana"}}, Peer{1, 65534, "nobody"});
  ASSERT_TRUE(nobody);
  EXPECT_EQ(nobody->name, "cli:nobody");
  EXPECT_EQ(nobody->provenance(), json::object());
}

TEST(ActorShown, SaysViaSudoAndWhoseSudo) {
  EXPECT_EQ(actor_shown("cli:dana", json::object()), "cli:dana");
  EXPECT_EQ(actor_shown("cli:dana", json{{"via", "sudo"}, {"sudo_user", "dana"}}),
            "cli:dana (via sudo)");
  EXPECT_EQ(actor_shown("cli:olga", json{{"via", "sudo"}, {"sudo_user", "dana"}}),
            "cli:olga (via sudo by dana)");
  EXPECT_EQ(actor_shown("hq:olga", json()), "hq:olga");
}

TEST(StillFailingWarning, SaysTheFailureAndWhenItReopens) {
  const WallTime now = at_utc("2026-12-07T12:01:00Z");
  StillFailing next{"lane-01-pos", "HTTP 500", at_utc("2026-12-07T12:00:31Z"), 1, 15s};
  EXPECT_EQ(still_failing_json(next, now)["warning"],
            "lane-01-pos still fails (HTTP 500 at 12:00:31Z); the engine will reopen it at the "
            "next check");
  StillFailing three{"lane-01-pos", "HTTP 500", at_utc("2026-12-06T23:59:59Z"), 3, 15s};
  json j = still_failing_json(three, now);
  EXPECT_EQ(j["warning"],
            "lane-01-pos still fails (HTTP 500 at 2026-12-06 23:59:59Z); the engine will reopen "
            "it after 3 more failed checks (about 45s)");
  EXPECT_EQ(j["checks_to_reopen"], 3);
  EXPECT_EQ(j["interval_ms"], 15000);
  EXPECT_EQ(j["probe"], "lane-01-pos");
}

}  // namespace
}  // namespace storewatch::agent
