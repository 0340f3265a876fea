package redpipe

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestCommandPolicies: the table carries the request_policy and
// response_policy tips of the stored COMMAND INFO, for every command and
// subcommand, and no policy where there is no tip.
func TestCommandPolicies(t *testing.T) {
	raw, err := os.ReadFile("internal/cmdgen/spec/command-info.json")
	if err != nil {
		t.Fatal(err)
	}
	var infos []json.RawMessage
	if err := json.Unmarshal(raw, &infos); err != nil {
		t.Fatal(err)
	}
	// tips collects name -> tips, subcommands included.
	tips := map[string][]string{}
	var walk func(json.RawMessage)
	walk = func(raw json.RawMessage) {
		var f []json.RawMessage
		if err := json.Unmarshal(raw, &f); err != nil || len(f) < 10 {
			t.Fatalf("entry %.60s: %v", raw, err)
		}
		var name string
		var ts []string
		var subs []json.RawMessage
		json.Unmarshal(f[0], &name)
		json.Unmarshal(f[7], &ts)
		json.Unmarshal(f[9], &subs)
		tips[strings.ToUpper(strings.ReplaceAll(name, "|", " "))] = ts
		for _, s := range subs {
			walk(s)
		}
	}
	for _, e := range infos {
		walk(e)
	}
	withPolicy := 0
	for name, ts := range tips {
		ci := commandTable[name]
		if ci == nil {
			t.Errorf("%s is not in the table", name)
			continue
		}
		wantReq, wantResp := "default", "default"
		for _, tip := range ts {
			if v, ok := strings.CutPrefix(tip, "request_policy:"); ok {
				wantReq = v
			}
			if v, ok := strings.CutPrefix(tip, "response_policy:"); ok {
				wantResp = v
			}
		}
		if ci.RequestPolicy.String() != wantReq || ci.ResponsePolicy.String() != wantResp {
			t.Errorf("%s: policies %v, %v; want %s, %s (tips %q)", name, ci.RequestPolicy, ci.ResponsePolicy, wantReq, wantResp, ts)
		}
		if ci.RequestPolicy != requestDefault {
			withPolicy++
		}
	}
	if withPolicy < 40 {
		t.Errorf("%d commands have a request policy, want the 40 or so of redis 7.0", withPolicy)
	}
	for _, tt := range []struct {
		ci   *commandInfo
		req  requestPolicy
		resp responsePolicy
	}{
		{cmdDbsize, requestAllShards, responseAggSum},
		{cmdKeys, requestAllShards, responseDefault},
		{cmdFlushall, requestAllShards, responseAllSucceeded},
		{cmdMget, requestMultiShard, responseDefault},
		{cmdDel, requestMultiShard, responseAggSum},
		{cmdMsetnx, requestMultiShard, responseAggMin},
		{cmdScriptExists, requestAllShards, responseAggLogicalAnd},
		{cmdScriptLoad, requestAllNodes, responseAllSucceeded},
		{cmdScan, requestSpecial, responseDefault},
		{cmdInfo, requestAllShards, responseSpecial},
		{cmdGet, requestDefault, responseDefault},
	} {
		if tt.ci.RequestPolicy != tt.req || tt.ci.ResponsePolicy != tt.resp {
			t.Errorf("%s: %v, %v; want %v, %v", tt.ci.Name, tt.ci.RequestPolicy, tt.ci.ResponsePolicy, tt.req, tt.resp)
		}
	}
	if s := requestPolicy(9).String() + " " + responsePolicy(9).String(); s != "requestPolicy(9) responsePolicy(9)" {
		t.Errorf("out-of-range policies print as %q", s)
	}
}
