-- Demo PACS auto-routing: every radiograph (DX, CR) or MR image that reaches Orthanc from outside is
-- forwarded by C-STORE to the cspine node (the "cspine" entry of DicomModalities in orthanc.json).
-- The node's results (SR, SEG, PR, DOC) come back to Orthanc and are not forwarded again, so there is no loop.

local IMAGE_MODALITIES = { DX = true, CR = true, MR = true }

function OnStoredInstance(instanceId, tags, metadata, origin)
  if origin['RequestOrigin'] == 'Lua' then
    return
  end
  if IMAGE_MODALITIES[tags['Modality']] then
    SendToModality(instanceId, 'cspine')
  end
end
