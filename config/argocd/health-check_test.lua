-- Tests of health-check.lua (run: lua5.4 config/argocd/health-check_test.lua; e2e/chart-check.sh
-- runs it when a Lua interpreter is installed). Argo CD passes the object as the global `obj`.
local dir = arg[0]:match("(.*/)") or "./"
local chunk = assert(loadfile(dir .. "health-check.lua"))
local function cond(t, s, r, m) return { type = t, status = s, reason = r, message = m or "" } end
local function trunk(gen, observed, conditions)
  return { metadata = { generation = gen }, spec = { fqdn = "sip.acme.example" },
           status = conditions and { observedGeneration = observed, conditions = conditions } or nil }
end
local ok_all = { cond("Accepted", "True", "Accepted"), cond("ResolvedRefs", "True", "ResolvedRefs"),
                 cond("DnsResolved", "True", "Resolved"), cond("Programmed", "True", "Programmed") }
local function with(extra) local t = {} for _, c in ipairs(ok_all) do t[#t + 1] = c end
  for _, c in ipairs(extra) do t[#t + 1] = c end return t end
local cases = {
  { "no status yet", trunk(1, nil, nil), "Progressing" },
  { "Ready=True", trunk(2, 2, with({ cond("Ready", "True", "Ready", "calls route") })), "Healthy" },
  { "old generation observed", trunk(3, 2, with({ cond("Ready", "True", "Ready") })), "Progressing" },
  { "suspended", trunk(1, 1, with({ cond("Ready", "False", "Suspended", "the trunk is suspended") })), "Suspended" },
  { "number conflict", trunk(1, 1, { cond("Accepted", "False", "NotAccepted", "+91… belongs to acme/other"),
      cond("Ready", "False", "NotAccepted") }), "Degraded" },
  { "missing Secret", trunk(1, 1, { cond("Accepted", "True", "Accepted"),
      cond("ResolvedRefs", "False", "InvalidSecretRef", "Secret globex-sbc-ca not found"),
      cond("Ready", "False", "InvalidSecretRef") }), "Degraded" },
  { "no DNS address", trunk(1, 1, { cond("Accepted", "True", "Accepted"), cond("ResolvedRefs", "True", "ResolvedRefs"),
      cond("DnsResolved", "False", "NoAddresses"), cond("Ready", "False", "NoAddresses") }), "Degraded" },
  { "programming pending", trunk(1, 1, { cond("Accepted", "True", "Accepted"), cond("ResolvedRefs", "True", "ResolvedRefs"),
      cond("DnsResolved", "True", "Resolved"), cond("Programmed", "Unknown", "Pending"),
      cond("Ready", "False", "Pending") }), "Progressing" },
  { "no Ready condition", trunk(1, 1, { cond("Accepted", "True", "Accepted") }), "Progressing" },
}
local failed = 0
for _, c in ipairs(cases) do
  obj = c[2]
  local hs = chunk()
  if hs.status ~= c[3] then
    failed = failed + 1
    print(string.format("FAIL %s: got %s (%s), want %s", c[1], tostring(hs.status), tostring(hs.message), c[3]))
  end
end
print(string.format("health-check.lua: %d cases, %d failed", #cases, failed))
os.exit(failed == 0 and 0 or 1)
