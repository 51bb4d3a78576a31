// Small progressive enhancements; every form works without this file.
(function () {
  "use strict";
  // Move focus to the error summary so keyboard and screen-reader users hear it first.
  var summary = document.getElementById("error-summary");
  if (summary) summary.focus();

  // A confirmation link confirms only by POST (mail filters fetch every link with GET):
  // readers with JavaScript need not press the button themselves.
  var auto = document.querySelector("form[data-auto-submit]");
  if (auto) auto.submit();

  // Preselect the reader's time zone from the browser (the Intl API).
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!zone) return;
  document.querySelectorAll("select[data-detect-timezone]").forEach(function (select) {
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === zone) {
        select.value = zone;
        return;
      }
    }
  });
})();
