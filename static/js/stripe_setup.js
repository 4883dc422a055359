// Stripe mode only: collect the card with Stripe.js, confirm the SetupIntent in the
// browser, then post its id back to us. The card data never reaches our server.
(function () {
  "use strict";
  var form = document.getElementById("stripe-setup-form");
  if (!form || typeof Stripe === "undefined") { return; }
  var stripe = Stripe(form.dataset.publishableKey);
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  var errors = document.getElementById("card-errors");
  var button = document.getElementById("stripe-setup-submit");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    button.disabled = true;
    errors.textContent = "";
    stripe.confirmCardSetup(form.dataset.clientSecret, {
      payment_method: { card: card, billing_details: { name: document.getElementById("cardholder-name").value } }
    }).then(function (result) {
      if (result.error) {
        errors.textContent = result.error.message;
        button.disabled = false;
        return;
      }
      form.querySelector("input[name=setup_intent]").value = result.setupIntent.id;
      form.submit();
    });
  });
})();
