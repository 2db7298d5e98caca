-- Argo CD health of a chainwatch Network (key resource.customizations.health.chainwatch.io_Network).
-- Progressing: the operator has not seen this generation yet, or the ingester has not reported.
-- Healthy: ingesting. Degraded: anything else, with the Ready condition's reason and message.
local hs = {status = "Progressing", message = "waiting for the operator"}
if obj.status == nil or obj.status.conditions == nil then return hs end
local generation = obj.metadata.generation or 0
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    if (c.observedGeneration or obj.status.observedGeneration or 0) < generation then
      hs.message = "the operator has not seen generation " .. generation .. " yet"
    elseif c.status == "True" then
      hs.status = "Healthy"; hs.message = c.message
    elseif c.reason == "WaitingForIngester" then
      hs.message = c.message
    else
      hs.status = "Degraded"; hs.message = (c.reason or "") .. ": " .. (c.message or "")
    end
  end
end
return hs
