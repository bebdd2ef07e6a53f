-- Argo CD health of a VirtualSipTrunk (vsip.io/v1alpha1), from its Ready condition.
-- Install: the `resource.customizations.health.vsip.io_VirtualSipTrunk` key of argocd-cm
-- (see argocd-cm-patch.yaml, which carries this same script).
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the vsip operator to report status"
  return hs
end
if obj.status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    local msg = c.reason or ""
    if c.message ~= nil and c.message ~= "" then
      msg = msg .. ": " .. c.message
    end
    if c.status == "True" then
      hs.status = "Healthy"
      hs.message = msg
      return hs
    end
    if c.reason == "Suspended" then
      hs.status = "Suspended"
      hs.message = msg
      return hs
    end
    -- Accepted=False (invalid spec, number conflict), ResolvedRefs=False (missing Secret or
    -- key) and DnsResolved=False (no usable address) need a person; Programmed=Unknown
    -- (rendering, proxies catching up) settles by itself within seconds.
    for _, d in ipairs(obj.status.conditions) do
      if (d.type == "Accepted" or d.type == "ResolvedRefs" or d.type == "DnsResolved")
          and d.status == "False" then
        hs.status = "Degraded"
        hs.message = d.type .. " " .. (d.reason or "") .. ": " .. (d.message or "")
        return hs
      end
    end
    hs.status = "Progressing"
    hs.message = msg
    return hs
  end
end
hs.status = "Progressing"
hs.message = "No Ready condition yet"
return hs
